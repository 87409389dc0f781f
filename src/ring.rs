//! The consistent-hash ring that places a shard key on one backend of a circle.
//!
//! Byte-identical to the Go influx-proxy (which uses `stathat.com/c/consistent`
//! v1.0.0), so a user who swaps binaries finds every measurement where it was:
//!
//! - every backend contributes `replicas` virtual nodes (256 by default); node `i`
//!   of element `e` sits at `CRC32-IEEE(decimal(i) ++ e)`, the replica index
//!   first and no separator (`"25" ++ "0"` = `"250"`);
//! - backends are added in config order and a later one overwrites an equal hash;
//! - a key goes to the first node whose hash is strictly greater than
//!   `CRC32-IEEE(key)`, wrapping around to the first node.
//!
//! The element string of a backend comes from `hash_key` ([`HashKey`]) and the
//! key of a point from `shard_key` ([`ShardKey`]). Everything here is pure: no
//! I/O, no threads, no allocation on lookup.

use std::fmt;

/// Number of virtual nodes per backend in the Go proxy (its `vnode_size`).
pub const DEFAULT_REPLICAS: usize = 256;

/// The sorted virtual nodes of one circle.
#[derive(Debug, Clone)]
pub struct Ring {
    /// Distinct node hashes, ascending.
    hashes: Vec<u32>,
    /// `owners[i]` is the backend index that owns `hashes[i]`.
    owners: Vec<u32>,
}

impl Ring {
    /// Builds the ring from the element string of each backend, in config order.
    pub fn new<S: AsRef<str>>(elements: &[S], replicas: usize) -> Ring {
        let mut nodes: fxhash::FxHashMap<u32, u32> = fxhash::FxHashMap::default();
        let mut buf = Vec::with_capacity(64);
        for (idx, element) in elements.iter().enumerate() {
            for replica in 0..replicas {
                buf.clear();
                buf.extend_from_slice(replica.to_string().as_bytes());
                buf.extend_from_slice(element.as_ref().as_bytes());
                // A later backend overwrites an earlier one on a collision.
                nodes.insert(crc32(&buf), idx as u32);
            }
        }
        let mut pairs: Vec<(u32, u32)> = nodes.into_iter().collect();
        pairs.sort_unstable_by_key(|&(hash, _)| hash);
        Ring {
            hashes: pairs.iter().map(|&(h, _)| h).collect(),
            owners: pairs.iter().map(|&(_, o)| o).collect(),
        }
    }

    /// The backend index that owns `key`, or `None` for an empty ring.
    pub fn get(&self, key: &[u8]) -> Option<usize> {
        if self.hashes.is_empty() {
            return None;
        }
        let hash = crc32(key);
        let mut i = self.hashes.partition_point(|&node| node <= hash);
        if i == self.hashes.len() {
            i = 0;
        }
        Some(self.owners[i] as usize)
    }

    /// Number of distinct virtual nodes (less than `backends * replicas` when
    /// element strings collide, as `idx` does from the 11th backend on).
    pub fn node_count(&self) -> usize {
        self.hashes.len()
    }
}

/// CRC-32 IEEE (zlib's), the hash Go's `crc32.ChecksumIEEE` computes.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// How a backend's element string is made (`hash_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// `"<idx>"`, the default (compatible with v2.4).
    Idx,
    /// `"|<idx>"`, free of the collisions `idx` has from the 11th backend.
    Exi,
    /// The backend name.
    Name,
    /// The backend URL.
    Url,
    /// A template in which every `%idx` is replaced by the index.
    Template(String),
}

impl HashKey {
    /// Parses a `hash_key` value; `None` when it is not one of the accepted forms.
    pub fn parse(value: &str) -> Option<HashKey> {
        match value {
            "idx" => Some(HashKey::Idx),
            "exi" => Some(HashKey::Exi),
            "name" => Some(HashKey::Name),
            "url" => Some(HashKey::Url),
            t if t.contains("%idx") => Some(HashKey::Template(t.to_string())),
            _ => None,
        }
    }

    /// The element string of backend number `idx` of a circle.
    pub fn element(&self, idx: usize, name: &str, url: &str) -> String {
        match self {
            HashKey::Idx => idx.to_string(),
            HashKey::Exi => format!("|{idx}"),
            HashKey::Name => name.to_string(),
            HashKey::Url => url.to_string(),
            HashKey::Template(t) => t.replace("%idx", &idx.to_string()),
        }
    }
}

impl fmt::Display for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashKey::Idx => f.write_str("idx"),
            HashKey::Exi => f.write_str("exi"),
            HashKey::Name => f.write_str("name"),
            HashKey::Url => f.write_str("url"),
            HashKey::Template(t) => f.write_str(t),
        }
    }
}

/// One piece of a `shard_key` template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Vec<u8>),
    Db,
    Measurement,
}

/// A compiled `shard_key` template: literal text with `%db` and `%mm` holes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardKey {
    template: String,
    parts: Vec<Part>,
}

impl ShardKey {
    /// Compiles a template scanned left to right as the Go proxy does; `None`
    /// when it names neither `%db` nor `%mm`.
    pub fn parse(template: &str) -> Option<ShardKey> {
        let bytes = template.as_bytes();
        let mut parts = Vec::new();
        let mut literal = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let rest = &bytes[i..];
            let hole = if rest.starts_with(b"%db") {
                Some(Part::Db)
            } else if rest.starts_with(b"%mm") {
                Some(Part::Measurement)
            } else {
                None
            };
            match hole {
                Some(part) => {
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(part);
                    i += 3;
                }
                None => {
                    literal.push(bytes[i]);
                    i += 1;
                }
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        if !parts
            .iter()
            .any(|p| matches!(p, Part::Db | Part::Measurement))
        {
            return None;
        }
        Some(ShardKey {
            template: template.to_string(),
            parts,
        })
    }

    /// Writes the key of (`db`, `measurement`) into `out` (cleared first).
    /// `measurement` is the unescaped name.
    pub fn render_into(&self, db: &[u8], measurement: &[u8], out: &mut Vec<u8>) {
        out.clear();
        for part in &self.parts {
            match part {
                Part::Literal(l) => out.extend_from_slice(l),
                Part::Db => out.extend_from_slice(db),
                Part::Measurement => out.extend_from_slice(measurement),
            }
        }
    }

    /// The key of (`db`, `measurement`) as a new buffer.
    pub fn render(&self, db: &str, measurement: &str) -> Vec<u8> {
        let mut out = Vec::new();
        self.render_into(db.as_bytes(), measurement.as_bytes(), &mut out);
        out
    }
}

impl Default for ShardKey {
    fn default() -> Self {
        ShardKey::parse("%db,%mm").unwrap_or(ShardKey {
            template: String::new(),
            parts: Vec::new(),
        })
    }
}

impl fmt::Display for ShardKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.template)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(hash_key: &str, names: &[&str], urls: &[&str]) -> Ring {
        let hk = HashKey::parse(hash_key).unwrap();
        let elements: Vec<String> = (0..names.len())
            .map(|i| hk.element(i, names[i], urls[i]))
            .collect();
        Ring::new(&elements, DEFAULT_REPLICAS)
    }

    fn n_ring(hash_key: &str, n: usize) -> Ring {
        let names: Vec<String> = (0..n).map(|i| format!("b{i}")).collect();
        let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        ring(hash_key, &names, &names)
    }

    const KEYS: [&str; 5] = [
        "db1,cpu",
        "db1,mem",
        "stress,ctr",
        "telegraf,cpu",
        "mydb,h2o_feet",
    ];

    fn owners(r: &Ring) -> Vec<usize> {
        KEYS.iter().map(|k| r.get(k.as_bytes()).unwrap()).collect()
    }

    #[test]
    fn crc32_matches_go_checksum_ieee() {
        assert_eq!(crc32(b"db1,cpu"), 2496467285);
        assert_eq!(crc32(b"db1,mem"), 3129623069);
        assert_eq!(crc32(b"stress,ctr"), 44637686);
        assert_eq!(crc32(b"telegraf,cpu"), 2064894339);
        assert_eq!(crc32(b"mydb,h2o_feet"), 3459409588);
        assert_eq!(crc32(b"00"), 3091600544);
    }

    #[test]
    fn placement_matches_reference_examples() {
        assert_eq!(owners(&n_ring("idx", 2)), [0, 1, 1, 0, 1]);
        assert_eq!(owners(&n_ring("idx", 3)), [2, 1, 2, 0, 1]);
        assert_eq!(owners(&n_ring("idx", 4)), [2, 1, 3, 0, 1]);
        assert_eq!(owners(&n_ring("exi", 3)), [2, 1, 2, 0, 1]);
        assert_eq!(owners(&n_ring("backend-%idx", 2)), [1, 1, 0, 1, 0]);
        let names = ["influxdb-1-1", "influxdb-1-2"];
        assert_eq!(owners(&ring("name", &names, &names)), [1, 1, 0, 1, 1]);
        let urls = ["http://127.0.0.1:8086", "http://127.0.0.1:8087"];
        assert_eq!(owners(&ring("url", &urls, &urls)), [0, 1, 1, 0, 0]);
    }

    #[test]
    fn shard_key_template_matches_reference_examples() {
        let sk = ShardKey::parse("shard-%db-%mm").unwrap();
        let r = n_ring("idx", 3);
        let get = |db, mm| r.get(&sk.render(db, mm)).unwrap();
        assert_eq!(get("db1", "cpu"), 0);
        assert_eq!(get("db1", "mem"), 1);
        assert_eq!(get("stress", "ctr"), 0);
        assert_eq!(get("telegraf", "cpu"), 2);
        let exi = n_ring("exi", 3);
        assert_eq!(exi.get(b"db2,cpu3"), Some(2));
        assert_eq!(n_ring("idx", 3).get(b"db2,cpu3"), Some(1));
    }

    #[test]
    fn idx_collides_from_the_eleventh_backend() {
        assert_eq!(n_ring("idx", 12).node_count(), 3022);
        assert_eq!(n_ring("exi", 12).node_count(), 3072);
    }

    #[test]
    fn default_shard_key_is_db_comma_measurement() {
        assert_eq!(ShardKey::default().render("db1", "cpu"), b"db1,cpu");
        assert!(ShardKey::parse("static").is_none());
        assert_eq!(ShardKey::parse("%mm").unwrap().render("d", "m"), b"m");
    }

    #[test]
    fn hash_key_rejects_unknown_forms() {
        assert!(HashKey::parse("idy").is_none());
        assert_eq!(HashKey::parse("b-%idx").unwrap().element(3, "", ""), "b-3");
    }

    #[test]
    fn empty_ring_has_no_owner() {
        let empty: [&str; 0] = [];
        assert_eq!(Ring::new(&empty, 256).get(b"x"), None);
    }

    #[test]
    fn removing_any_backend_named_by_name_moves_only_its_own_keys() {
        // With `name` (or `url`) elements, removing a backend from the middle
        // leaves every other backend's element, hence its keys, in place.
        let names: Vec<String> = (0..6).map(|i| format!("influxdb-{i}")).collect();
        let full = Ring::new(&names, DEFAULT_REPLICAS);
        for removed in 0..names.len() {
            let rest: Vec<String> = names
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != removed)
                .map(|(_, n)| n.clone())
                .collect();
            let less = Ring::new(&rest, DEFAULT_REPLICAS);
            for k in 0..3000 {
                let key = format!("db{},m{}", k % 5, k);
                let before = &names[full.get(key.as_bytes()).unwrap()];
                let after = &rest[less.get(key.as_bytes()).unwrap()];
                if before != &names[removed] {
                    assert_eq!(before, after, "key {key} moved when removing {removed}");
                }
            }
        }
    }

    #[test]
    fn removing_the_last_backend_moves_only_its_own_keys() {
        // Property over many keys: with `exi` (no collisions) removing the
        // last backend changes the owner only of keys that backend owned.
        for n in 2..8 {
            let full = n_ring("exi", n);
            let less = n_ring("exi", n - 1);
            for k in 0..2000 {
                let key = format!("db{},m{}", k % 7, k);
                let before = full.get(key.as_bytes()).unwrap();
                let after = less.get(key.as_bytes()).unwrap();
                if before != n - 1 {
                    assert_eq!(before, after, "key {key} moved with n={n}");
                }
            }
        }
    }
}
