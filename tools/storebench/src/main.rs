//! Event-store benchmark for vigil: sled 0.34 vs redb 4.x on the same workload.
//!
//! storebench run    --store sled|redb --dir DIR [--cache MIB] [--durability immediate|none16] [--events N]
//! storebench reopen --store sled|redb --dir DIR [--cache MIB]
//!
//! Workload: events of ~250 B (id, camera, unix_ms, class, score, bbox, snapshot
//! name, delivery state, JSON-ish extra), key = id big-endian, plus a time index
//! keyed by (unix_ms BE, id BE) for age retention, plus a meta row (count, bytes).
//! Batches of 64, one transaction each; retention (count, value bytes, age) deletes
//! the oldest in the same transaction. The invariant "never above quota" is checked
//! after every commit.

use redb::ReadableTable;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BATCH: usize = 64;
const MAX_COUNT: u64 = 20_000;
const MAX_BYTES: u64 = 5 * 1024 * 1024;
const MAX_AGE_MS: i64 = 24 * 3600 * 1000;
const SAMPLE_EVERY: u64 = 10_000;
const T0: i64 = 1_790_000_000_000;

// ---------------------------------------------------------------- workload

struct Gen {
    rng: u64,
    ts: i64,
}

impl Gen {
    fn new() -> Self {
        Gen {
            rng: 0x9e37_79b9_7f4a_7c15,
            ts: T0,
        }
    }
    fn next_u32(&mut self) -> u32 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }
    /// Event `id` (1-based). Phases: ids 100k..120k carry big extras (the byte quota
    /// binds), ids 150k..170k arrive 6 s apart (the age quota binds), else ~1 s apart.
    fn event(&mut self, id: u64) -> (i64, Vec<u8>) {
        let spacing = if (150_000..170_000).contains(&id) {
            6_000
        } else {
            1_000
        };
        self.ts += spacing - 100 + (self.next_u32() % 200) as i64;
        let ts = self.ts;
        let cam = (self.next_u32() % 16) as u16;
        let class = (self.next_u32() % 80) as u16;
        let score = 0.3 + (self.next_u32() % 700) as f32 / 1000.0;
        let extra_len = if (100_000..120_000).contains(&id) {
            300 + (self.next_u32() % 101) as usize
        } else {
            120 + (self.next_u32() % 93) as usize
        };
        let mut v = Vec::with_capacity(84 + extra_len);
        v.extend_from_slice(&id.to_be_bytes());
        v.extend_from_slice(&cam.to_le_bytes());
        v.extend_from_slice(&ts.to_le_bytes());
        v.extend_from_slice(&class.to_le_bytes());
        v.extend_from_slice(&score.to_le_bytes());
        for i in 0..4 {
            v.extend_from_slice(&((self.next_u32() % 1920) as f32 + i as f32).to_le_bytes());
        }
        v.push(0); // upstream-delivery state: pending
        let name = format!("cam{cam:02}/{ts:013}-{id:012}-snap.jpg");
        v.push(name.len() as u8);
        v.extend_from_slice(name.as_bytes());
        let mut extra = format!(
            "{{\"track\":{},\"zone\":\"zone-{}\",\"model\":\"yolov8n-rknn\",\"attrs\":{{\"color\":\"grey\",\"dir\":\"in\"}},\"pad\":\"",
            self.next_u32() % 100_000,
            cam % 4
        );
        while extra.len() < extra_len - 2 {
            extra.push('x');
        }
        extra.push_str("\"}");
        v.extend_from_slice(&(extra.len() as u16).to_le_bytes());
        v.extend_from_slice(extra.as_bytes());
        (ts, v)
    }
}

fn ts_of(v: &[u8]) -> i64 {
    i64::from_le_bytes(v[10..18].try_into().unwrap())
}

fn idx_key(ts: i64, id: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&(ts as u64).to_be_bytes());
    k[8..].copy_from_slice(&id.to_be_bytes());
    k
}

fn meta_val(count: u64, bytes: u64) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[..8].copy_from_slice(&count.to_le_bytes());
    m[8..].copy_from_slice(&bytes.to_le_bytes());
    m
}

#[derive(Default, Clone, Copy)]
struct Deleted {
    age: u64,
    count: u64,
    bytes: u64,
}

/// What one batch commit must do, computed from the store's current contents.
struct Plan {
    /// (id, ts, len, reason) reason 0 age, 1 count, 2 bytes
    del: Vec<(u64, i64, u64, u8)>,
    count: u64,
    bytes: u64,
}

/// Shared retention algorithm: the store hands two iterators over its existing rows.
fn plan(
    count: u64,
    bytes: u64,
    batch: &[(u64, i64, Vec<u8>)],
    by_time: &mut dyn Iterator<Item = (i64, u64, u64)>, // (ts, id, value len)
    by_id: &mut dyn Iterator<Item = (u64, i64, u64)>,   // (id, ts, len)
) -> Plan {
    let newest = batch.iter().map(|e| e.1).max().unwrap();
    let cutoff = newest - MAX_AGE_MS;
    let mut del = Vec::new();
    let mut seen = HashSet::new();
    let mut c = count + batch.len() as u64;
    let mut b = bytes + batch.iter().map(|e| e.2.len() as u64).sum::<u64>();
    for (ts, id, len) in by_time {
        if ts >= cutoff {
            break;
        }
        del.push((id, ts, len, 0));
        seen.insert(id);
        c -= 1;
        b -= len;
    }
    while c > MAX_COUNT || b > MAX_BYTES {
        let (id, ts, len) = loop {
            let e = by_id.next().expect("quota smaller than one batch");
            if !seen.contains(&e.0) {
                break e;
            }
        };
        del.push((id, ts, len, if c > MAX_COUNT { 1 } else { 2 }));
        c -= 1;
        b -= len;
    }
    Plan {
        del,
        count: c,
        bytes: b,
    }
}

// ---------------------------------------------------------------- stores

trait Store {
    fn commit(&mut self, batch: &[(u64, i64, Vec<u8>)], force_durable: bool) -> Plan;
    /// (count, bytes) from a full scan, and the meta row.
    fn verify(&self) -> ((u64, u64), (u64, u64));
    fn name(&self) -> String;
}

// sled: one tree, prefixes b'e'+id, b't'+ts+id, b'm'; one apply_batch + flush per batch.
struct SledStore {
    db: sled::Db,
    count: u64,
    bytes: u64,
    cache_mib: u64,
}

fn ekey(id: u64) -> [u8; 9] {
    let mut k = [b'e'; 9];
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

impl SledStore {
    fn open(dir: &Path, cache_mib: u64) -> Self {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_mib * 1024 * 1024)
            .open()
            .unwrap();
        let (count, bytes) = match db.get(b"m").unwrap() {
            Some(m) => (
                u64::from_le_bytes(m[..8].try_into().unwrap()),
                u64::from_le_bytes(m[8..].try_into().unwrap()),
            ),
            None => (0, 0),
        };
        SledStore {
            db,
            count,
            bytes,
            cache_mib,
        }
    }
}

impl Store for SledStore {
    fn name(&self) -> String {
        format!("sled cache={}MiB", self.cache_mib)
    }
    fn commit(&mut self, batch: &[(u64, i64, Vec<u8>)], _force: bool) -> Plan {
        let db = &self.db;
        let mut by_time = db.range(&b"t"[..]..&b"u"[..]).map(|r| {
            let (k, _) = r.unwrap();
            let ts = u64::from_be_bytes(k[1..9].try_into().unwrap()) as i64;
            let id = u64::from_be_bytes(k[9..17].try_into().unwrap());
            let len = db.get(ekey(id)).unwrap().unwrap().len() as u64;
            (ts, id, len)
        });
        let mut by_id = db.range(&b"e"[..]..&b"f"[..]).map(|r| {
            let (k, v) = r.unwrap();
            (
                u64::from_be_bytes(k[1..9].try_into().unwrap()),
                ts_of(&v),
                v.len() as u64,
            )
        });
        let p = plan(self.count, self.bytes, batch, &mut by_time, &mut by_id);
        let mut b = sled::Batch::default();
        for &(id, ts, _, _) in &p.del {
            b.remove(&ekey(id)[..]);
            let mut tk = [b't'; 17];
            tk[1..].copy_from_slice(&idx_key(ts, id));
            b.remove(&tk[..]);
        }
        for (id, ts, v) in batch {
            b.insert(&ekey(*id)[..], &v[..]);
            let mut tk = [b't'; 17];
            tk[1..].copy_from_slice(&idx_key(*ts, *id));
            b.insert(&tk[..], &[][..]);
        }
        b.insert(&b"m"[..], &meta_val(p.count, p.bytes)[..]);
        db.apply_batch(b).unwrap();
        db.flush().unwrap();
        self.count = p.count;
        self.bytes = p.bytes;
        p
    }
    fn verify(&self) -> ((u64, u64), (u64, u64)) {
        let mut c = 0;
        let mut b = 0;
        for r in self.db.range(&b"e"[..]..&b"f"[..]) {
            let (_, v) = r.unwrap();
            c += 1;
            b += v.len() as u64;
        }
        let mut ic = 0;
        for _ in self.db.range(&b"t"[..]..&b"u"[..]) {
            ic += 1;
        }
        assert_eq!(ic, c, "time index out of step");
        ((c, b), (self.count, self.bytes))
    }
}

// redb: three tables in one file; one WriteTransaction per batch.
const EVENTS: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("events");
const BY_TIME: redb::TableDefinition<&[u8], ()> = redb::TableDefinition::new("by_time");
const META: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");

struct RedbStore {
    db: redb::Database,
    count: u64,
    bytes: u64,
    cache_mib: Option<u64>,
    /// None: Immediate on every batch. Some(n): Durability::None, Immediate every n-th batch.
    lazy: Option<u64>,
    batches: u64,
}

fn redb_open(path: &Path, cache_mib: Option<u64>) -> redb::Database {
    let mut b = redb::Database::builder();
    if let Some(c) = cache_mib {
        b.set_cache_size((c * 1024 * 1024) as usize);
    }
    b.create(path).unwrap()
}

impl RedbStore {
    fn open(dir: &Path, cache_mib: Option<u64>, lazy: Option<u64>) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let db = redb_open(&dir.join("events.redb"), cache_mib);
        let w = db.begin_write().unwrap();
        let (count, bytes) = {
            w.open_table(EVENTS).unwrap();
            w.open_table(BY_TIME).unwrap();
            let m = w.open_table(META).unwrap();
            let r = match m.get("m").unwrap() {
                Some(v) => {
                    let v = v.value();
                    (
                        u64::from_le_bytes(v[..8].try_into().unwrap()),
                        u64::from_le_bytes(v[8..].try_into().unwrap()),
                    )
                }
                None => (0, 0),
            };
            r
        };
        w.commit().unwrap();
        RedbStore {
            db,
            count,
            bytes,
            cache_mib,
            lazy,
            batches: 0,
        }
    }
}

impl Store for RedbStore {
    fn name(&self) -> String {
        let c = match self.cache_mib {
            Some(c) => format!("{c}MiB"),
            None => "default(1GiB)".into(),
        };
        match self.lazy {
            None => format!("redb cache={c} Immediate"),
            Some(n) => format!("redb cache={c} None+Immediate/{n}"),
        }
    }
    fn commit(&mut self, batch: &[(u64, i64, Vec<u8>)], force: bool) -> Plan {
        self.batches += 1;
        let mut w = self.db.begin_write().unwrap();
        let durable = match self.lazy {
            None => true,
            Some(n) => force || self.batches.is_multiple_of(n),
        };
        w.set_durability(if durable {
            redb::Durability::Immediate
        } else {
            redb::Durability::None
        })
        .unwrap();
        let p;
        {
            let mut ev = w.open_table(EVENTS).unwrap();
            let mut ix = w.open_table(BY_TIME).unwrap();
            let mut meta = w.open_table(META).unwrap();
            {
                let ev_r = &ev;
                let mut by_time = ix.iter().unwrap().map(|r| {
                    let (k, _) = r.unwrap();
                    let k = k.value();
                    let ts = u64::from_be_bytes(k[0..8].try_into().unwrap()) as i64;
                    let id = u64::from_be_bytes(k[8..16].try_into().unwrap());
                    let len = ev_r
                        .get(&id.to_be_bytes()[..])
                        .unwrap()
                        .unwrap()
                        .value()
                        .len() as u64;
                    (ts, id, len)
                });
                let mut by_id = ev.iter().unwrap().map(|r| {
                    let (k, v) = r.unwrap();
                    let v = v.value();
                    (
                        u64::from_be_bytes(k.value().try_into().unwrap()),
                        ts_of(v),
                        v.len() as u64,
                    )
                });
                p = plan(self.count, self.bytes, batch, &mut by_time, &mut by_id);
            }
            for &(id, ts, _, _) in &p.del {
                ev.remove(&id.to_be_bytes()[..]).unwrap();
                ix.remove(&idx_key(ts, id)[..]).unwrap();
            }
            for (id, ts, v) in batch {
                ev.insert(&id.to_be_bytes()[..], &v[..]).unwrap();
                ix.insert(&idx_key(*ts, *id)[..], ()).unwrap();
            }
            meta.insert("m", &meta_val(p.count, p.bytes)[..]).unwrap();
        }
        w.commit().unwrap();
        self.count = p.count;
        self.bytes = p.bytes;
        p
    }
    fn verify(&self) -> ((u64, u64), (u64, u64)) {
        use redb::ReadableDatabase;
        use redb::ReadableTableMetadata;
        let r = self.db.begin_read().unwrap();
        let ev = r.open_table(EVENTS).unwrap();
        let ix = r.open_table(BY_TIME).unwrap();
        let mut c = 0;
        let mut b = 0;
        for e in ev.iter().unwrap() {
            let (_, v) = e.unwrap();
            c += 1;
            b += v.value().len() as u64;
        }
        assert_eq!(ix.len().unwrap(), c, "time index out of step");
        ((c, b), (self.count, self.bytes))
    }
}

// ---------------------------------------------------------------- measuring

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    for l in s.lines() {
        if let Some(rest) = l.strip_prefix(field) {
            return rest.trim().trim_end_matches("kB").trim().parse().unwrap();
        }
    }
    0
}

fn du(dir: &Path) -> (u64, u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut app, mut alloc, mut files) = (0, 0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                app += m.len();
                alloc += m.blocks() * 512;
                files += 1;
            }
        }
    }
    (app, alloc, files)
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

fn mib(b: u64) -> f64 {
    b as f64 / 1048576.0
}

struct Args {
    mode: String,
    store: String,
    dir: PathBuf,
    cache: Option<u64>,
    durability: String,
    events: u64,
    compact: bool,
}

fn args() -> Args {
    let a: Vec<String> = std::env::args().collect();
    let mut r = Args {
        mode: a.get(1).cloned().unwrap_or_default(),
        store: String::new(),
        dir: PathBuf::new(),
        cache: None,
        durability: "immediate".into(),
        events: 200_000,
        compact: false,
    };
    let mut i = 2;
    while i < a.len() {
        match a[i].as_str() {
            "--store" => r.store = a[i + 1].clone(),
            "--dir" => r.dir = a[i + 1].clone().into(),
            "--cache" => r.cache = Some(a[i + 1].parse().unwrap()),
            "--durability" => r.durability = a[i + 1].clone(),
            "--events" => r.events = a[i + 1].parse().unwrap(),
            "--compact" => {
                r.compact = true;
                i -= 1;
            }
            x => panic!("unknown arg {x}"),
        }
        i += 2;
    }
    r
}

fn open_store(a: &Args) -> Box<dyn Store> {
    match a.store.as_str() {
        "sled" => Box::new(SledStore::open(&a.dir, a.cache.unwrap_or(8))),
        "redb" => {
            let lazy = match a.durability.as_str() {
                "immediate" => None,
                "none16" => Some(16),
                d => panic!("durability {d}"),
            };
            Box::new(RedbStore::open(&a.dir, a.cache, lazy))
        }
        s => panic!("store {s}"),
    }
}

fn run(a: &Args) {
    let _ = std::fs::remove_dir_all(&a.dir);
    let mut st = open_store(a);
    let name = st.name();
    println!("# {name}  events={} batch={BATCH} max_count={MAX_COUNT} max_bytes={MAX_BYTES} max_age_h=24", a.events);
    println!(
        "{:>7} {:>6} {:>8} {:>8} {:>9} {:>9} {:>5} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7}",
        "events",
        "live",
        "liveMiB",
        "RSS_MiB",
        "disk_MiB",
        "alloc_MiB",
        "files",
        "p50_ms",
        "p99_ms",
        "max_ms",
        "del_age",
        "del_cnt",
        "del_byt"
    );
    let mut gen = Gen::new();
    let mut lat: Vec<Duration> = Vec::new();
    let mut all_lat: Vec<Duration> = Vec::new();
    let mut dels = Deleted::default();
    let mut id = 0u64;
    let started = Instant::now();
    let mut next_sample = SAMPLE_EVERY;
    while id < a.events {
        let n = BATCH.min((a.events - id) as usize);
        let batch: Vec<(u64, i64, Vec<u8>)> = (0..n)
            .map(|_| {
                id += 1;
                let (ts, v) = gen.event(id);
                (id, ts, v)
            })
            .collect();
        let last = id >= a.events;
        let t = Instant::now();
        let p = st.commit(&batch, last);
        let dt = t.elapsed();
        lat.push(dt);
        all_lat.push(dt);
        assert!(
            p.count <= MAX_COUNT && p.bytes <= MAX_BYTES,
            "quota exceeded"
        );
        for d in &p.del {
            match d.3 {
                0 => dels.age += 1,
                1 => dels.count += 1,
                _ => dels.bytes += 1,
            }
        }
        if id >= next_sample || last {
            next_sample += SAMPLE_EVERY;
            let (app, alloc, files) = du(&a.dir);
            let (p50, p99, mx) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99), pct(&mut lat, 1.0));
            println!(
                "{:>7} {:>6} {:>8.2} {:>8.1} {:>9.2} {:>9.2} {:>5} {:>8.2} {:>8.2} {:>8.2} {:>7} {:>7} {:>7}",
                id, p.count, mib(p.bytes), status_kib("VmRSS:") as f64 / 1024.0, mib(app), mib(alloc), files,
                p50, p99, mx, dels.age, dels.count, dels.bytes
            );
            lat.clear();
        }
    }
    let wall = started.elapsed();
    let ((c, b), (mc, mb)) = st.verify();
    assert_eq!((c, b), (mc, mb), "meta row disagrees with a scan");
    let (p50, p99, mx) = (
        pct(&mut all_lat, 0.5),
        pct(&mut all_lat, 0.99),
        pct(&mut all_lat, 1.0),
    );
    println!(
        "SUMMARY run {name}: wall_s={:.1} batches={} p50_ms={p50:.2} p99_ms={p99:.2} max_ms={mx:.2} peak_RSS_MiB(VmHWM)={:.1} final_RSS_MiB={:.1} live={c} live_MiB={:.2}",
        wall.as_secs_f64(),
        all_lat.len(),
        status_kib("VmHWM:") as f64 / 1024.0,
        status_kib("VmRSS:") as f64 / 1024.0,
        mib(b)
    );
    drop(st);
    let (app, alloc, files) = du(&a.dir);
    println!(
        "SUMMARY closed {name}: disk_MiB={:.2} alloc_MiB={:.2} files={files}",
        mib(app),
        mib(alloc)
    );
}

/// Runs in a fresh process: open time, RSS after open and after a full scan, sizes,
/// and for redb a compact().
fn reopen(a: &Args) {
    let rss0 = status_kib("VmRSS:");
    let t = Instant::now();
    let st = open_store(a);
    let open_ms = t.elapsed().as_secs_f64() * 1000.0;
    let name = st.name();
    let rss_open = status_kib("VmRSS:");
    let t = Instant::now();
    let ((c, b), (mc, mb)) = st.verify();
    let scan_ms = t.elapsed().as_secs_f64() * 1000.0;
    assert_eq!((c, b), (mc, mb));
    let rss_scan = status_kib("VmRSS:");
    drop(st);
    let (app, alloc, _) = du(&a.dir);
    println!(
        "SUMMARY reopen {name}: open_ms={open_ms:.1} scan_ms={scan_ms:.1} live={c} RSS_before_open_MiB={:.1} RSS_after_open_MiB={:.1} RSS_after_scan_MiB={:.1} disk_after_reopen_MiB={:.2} alloc_MiB={:.2}",
        rss0 as f64 / 1024.0,
        rss_open as f64 / 1024.0,
        rss_scan as f64 / 1024.0,
        mib(app),
        mib(alloc)
    );
    if a.compact && a.store == "redb" {
        let mut db = redb_open(&a.dir.join("events.redb"), a.cache);
        let t = Instant::now();
        let mut rounds = 0;
        while db.compact().unwrap() {
            rounds += 1;
        }
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        drop(db);
        let (app, alloc, _) = du(&a.dir);
        println!(
            "SUMMARY compact {name}: compact_ms={ms:.1} rounds={rounds} disk_after_compact_MiB={:.2} alloc_MiB={:.2} RSS_MiB={:.1}",
            mib(app),
            mib(alloc),
            status_kib("VmRSS:") as f64 / 1024.0
        );
    }
}

fn main() {
    let a = args();
    match a.mode.as_str() {
        "run" => run(&a),
        "reopen" => reopen(&a),
        m => panic!("mode {m}: use run|reopen"),
    }
}
