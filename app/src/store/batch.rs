//! Events waiting for the next commit, in memory of fixed size.
//!
//! The Python predecessor's write buffer kept its task list after every
//! flush and grew until the process died. Here the batch is an index of
//! fixed capacity over one byte arena of fixed capacity, both allocated
//! once; `Store::commit` empties it on every path (success or failure), and
//! a full batch refuses a push rather than growing, so the writer must flush
//! first.

use super::EventRecord;

/// Bytes of arena reserved per batch slot: a record is a camera name of at
/// most 64 bytes, a class name and a dozen numbers, about 250 bytes in JSON.
pub const RECORD_BYTES: usize = 512;

/// One event in the batch.
#[derive(Clone, Copy, Debug)]
pub struct BatchItem {
    /// The event id.
    pub id: u64,
    /// Bytes of its snapshot file (0: none).
    pub snapshot_len: u32,
    start: usize,
    end: usize,
}

/// A batch of encoded event records.
pub struct Batch {
    items: Vec<BatchItem>,
    arena: Vec<u8>,
    capacity: usize,
}

/// Why a record was not added.
#[derive(Debug, PartialEq, Eq)]
pub enum PushError {
    /// The batch has no room; commit it first.
    Full,
    /// The record's JSON is longer than [`RECORD_BYTES`] (cannot happen
    /// with validated camera names; refused rather than grown).
    TooLong,
}

impl Batch {
    /// A batch of at most `capacity` events.
    pub fn with_capacity(capacity: usize) -> Batch {
        Batch {
            items: Vec::with_capacity(capacity),
            arena: Vec::with_capacity(capacity * RECORD_BYTES),
            capacity,
        }
    }

    /// Adds an encoded record; refused, leaving the batch as it was, when
    /// the batch is full.
    pub fn push(&mut self, record: &EventRecord) -> Result<(), PushError> {
        if self.is_full() {
            return Err(PushError::Full);
        }
        // Encoded into a fixed scratch first, so the arena never grows.
        let mut scratch = [0u8; RECORD_BYTES];
        let mut cursor = std::io::Cursor::new(&mut scratch[..]);
        record
            .write_json(&mut cursor)
            .map_err(|_| PushError::TooLong)?;
        let len = cursor.position() as usize;
        let start = self.arena.len();
        self.arena.extend_from_slice(&scratch[..len]);
        self.items.push(BatchItem {
            id: record.id,
            snapshot_len: record.snapshot_bytes,
            start,
            end: self.arena.len(),
        });
        Ok(())
    }

    /// The events, oldest first.
    pub fn items(&self) -> &[BatchItem] {
        &self.items
    }

    /// The encoded record of `item`.
    pub fn record(&self, item: &BatchItem) -> &[u8] {
        &self.arena[item.start..item.end]
    }

    /// Events in the batch.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether another event would be refused.
    pub fn is_full(&self) -> bool {
        self.items.len() >= self.capacity || self.arena.capacity() - self.arena.len() < RECORD_BYTES
    }

    /// Empties the batch, keeping its memory.
    pub fn clear(&mut self) {
        self.items.clear();
        self.arena.clear();
    }

    /// Bytes the batch holds for good (index and arena), for the budget and
    /// for the test that it never grows.
    pub fn allocated_bytes(&self) -> usize {
        self.items.capacity() * std::mem::size_of::<BatchItem>() + self.arena.capacity()
    }

    /// Bytes a batch of `capacity` events allocates.
    pub fn bytes_for(capacity: usize) -> usize {
        capacity * (std::mem::size_of::<BatchItem>() + RECORD_BYTES)
    }
}
