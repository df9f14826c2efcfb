//! One stored event, as the store keeps it and the API and upstreams see it.
//!
//! Records are JSON: a few hundred bytes each, readable with any tool when a
//! box comes back for analysis, and the same document the HTTP upstream and
//! the MQTT topic carry, so there is one format to document (docs/events.md).

use serde::{Deserialize, Serialize};

/// A stored event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// The event's id, unique on this box for the life of its data
    /// directory (ids continue across restarts).
    pub id: u64,
    /// Camera name.
    pub camera: String,
    /// Wall-clock time in milliseconds since the Unix epoch.
    pub unix_ms: i64,
    /// Stream time of the picture in microseconds.
    pub pts_us: i64,
    /// Class id in the detector's table.
    pub class_id: u16,
    /// Class name.
    pub class: String,
    /// Detection score (0..1).
    pub score: f32,
    /// Box normalised to the picture: x0, y0, x1, y1.
    pub bbox: [f32; 4],
    /// Bytes of the snapshot JPEG; 0 when the event has none (the snapshot
    /// pool was empty or the picture could not be encoded).
    pub snapshot_bytes: u32,
    /// The event clip this event belongs to (`clips/<id>.mp4`, the id of the
    /// event that opened it), or `None` when no clip was recording. Records
    /// written before clips existed have no such field and read as `None`.
    #[serde(default)]
    pub clip: Option<u64>,
    /// The box's clock was not synchronised to a time source when the
    /// event was stored, so `unix_ms` may be far off (a board without an
    /// RTC battery starts wherever the kernel booted). Older records read
    /// as `false`.
    #[serde(default)]
    pub clock_unsynced: bool,
}

impl EventRecord {
    /// Writes the record's JSON to `out` (fails only when `out` does).
    pub fn write_json(&self, out: impl std::io::Write) -> Result<(), serde_json::Error> {
        serde_json::to_writer(out, self)
    }

    /// Parses a stored record; `None` when the bytes are not a record (a
    /// damaged entry is skipped, never a panic).
    pub fn from_json(bytes: &[u8]) -> Option<EventRecord> {
        serde_json::from_slice(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_and_garbage_is_refused() {
        let r = EventRecord {
            id: 7,
            camera: "gate".into(),
            unix_ms: 1_700_000_000_123,
            pts_us: 40_000,
            class_id: 1,
            class: "person".into(),
            score: 0.5,
            bbox: [0.1, 0.2, 0.3, 0.4],
            snapshot_bytes: 1234,
            clip: Some(5),
            clock_unsynced: false,
        };
        let mut out = Vec::new();
        r.write_json(&mut out).unwrap();
        assert!(
            out.ends_with(b"\"clip\":5,\"clock_unsynced\":false}"),
            "the clip id and the clock flag are in the JSON"
        );
        assert_eq!(EventRecord::from_json(&out), Some(r.clone()));
        let none = EventRecord { clip: None, ..r };
        out.clear();
        none.write_json(&mut out).unwrap();
        assert!(
            out.ends_with(b"\"clip\":null,\"clock_unsynced\":false}"),
            "no clip is an explicit null"
        );
        assert_eq!(EventRecord::from_json(&out), Some(none));
        assert_eq!(EventRecord::from_json(b"{\"id\":1}"), None);
        assert_eq!(EventRecord::from_json(&out[..out.len() - 1]), None);
    }

    /// Records stored before clips existed have no `clip` field: they still
    /// parse, as events without a clip.
    #[test]
    fn records_without_a_clip_field_still_parse() {
        let old = br#"{"id":3,"camera":"gate","unix_ms":1700000000123,"pts_us":40000,"class_id":1,"class":"person","score":0.5,"bbox":[0.1,0.2,0.3,0.4],"snapshot_bytes":0}"#;
        let r = EventRecord::from_json(old).expect("an old record parses");
        assert_eq!((r.id, r.clip, r.clock_unsynced), (3, None, false));
    }

    /// Mutation fuzzing: damaged records (a torn or corrupted entry) are
    /// refused or parsed, never a panic.
    #[test]
    fn mutated_records_never_panic() {
        let mut seed = Vec::new();
        EventRecord {
            id: 99,
            camera: "yard".into(),
            unix_ms: 1,
            pts_us: -5,
            class_id: 3,
            class: "car".into(),
            score: 0.25,
            bbox: [0.0, 0.0, 1.0, 1.0],
            snapshot_bytes: 0,
            clip: Some(99),
            clock_unsynced: true,
        }
        .write_json(&mut seed)
        .unwrap();
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let (mut parsed, mut refused) = (0, 0);
        for _ in 0..20_000 {
            let mut bytes = seed.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() % bytes.len() as u64) as usize;
                match next() % 3 {
                    0 => bytes[at] = next() as u8,
                    1 => bytes.truncate(at),
                    _ => bytes.insert(at, b"{}[],:\"0e-"[(next() % 10) as usize]),
                }
                if bytes.is_empty() {
                    bytes.push(b'{');
                }
            }
            match EventRecord::from_json(&bytes) {
                Some(_) => parsed += 1,
                None => refused += 1,
            }
        }
        assert!(
            parsed > 0 && refused > 0,
            "{parsed} parsed, {refused} refused"
        );
    }
}
