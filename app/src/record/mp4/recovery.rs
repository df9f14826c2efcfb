//! Recovery after a crash: a clip file whose last fragment was torn plays
//! in FFmpeg up to the tear, but Chromium stops there with a decode error,
//! so at start every clip file is cut back to its whole boxes
//! (`recorder::repair_clips`). See docs/recording.md, "Torn fragments".

use std::io::{Read, Seek, SeekFrom};

/// Length of the longest prefix of a clip file made of whole boxes, the
/// init segment and only complete fragments (a `moof` counts once its
/// `mdat` is whole): what to truncate a file to after a crash tore its last
/// fragment. 0 when not even the init segment is whole.
pub fn complete_len<F: Read + Seek>(file: &mut F) -> std::io::Result<u64> {
    let end = file.seek(SeekFrom::End(0))?;
    let (mut pos, mut complete, mut moov) = (0u64, 0u64, false);
    while end - pos >= 8 {
        let mut header = [0u8; 16];
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(&mut header[..8])?;
        let size = match u32::from_be_bytes([header[0], header[1], header[2], header[3]]) {
            // A 64-bit size follows the type.
            1 if end - pos >= 16 => {
                file.read_exact(&mut header[8..])?;
                u64::from_be_bytes(header[8..].try_into().expect("8 bytes"))
            }
            // Up to the end of the file: whole by definition.
            0 => end - pos,
            size => u64::from(size),
        };
        if size < 8 || size > end - pos {
            break;
        }
        pos += size;
        let kind = &header[4..8];
        moov |= kind == b"moov";
        if moov && kind != b"moof" {
            complete = pos;
        }
    }
    Ok(complete)
}
