//! Every issuance in issue order, indexed by node and by key, held compactly: a million nodes is a
//! realistic pool, so each node's name is stored once (in its `Issuance`), the node index keeps
//! only a hash and a position, and each key lists positions rather than names.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Issuance, KeyId};

/// Position of an issuance in issue order.
pub type IssuePos = u32;

/// Source of the holder versions: process-wide, so a rebuilt log never repeats a version an
/// earlier one handed out (a cache keyed by version can never mistake the two).
static NEXT_VERSION: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_version() -> u64 {
    NEXT_VERSION.fetch_add(1, Ordering::Relaxed)
}

#[derive(Clone, Debug, Default)]
pub struct IssueLog {
    /// Every issuance, oldest first (issue order is time order: the issuer's clock only moves forward).
    log: Vec<Issuance>,
    /// Hash of a node's name → its position. Names whose hash another name already has are in
    /// `collisions`; a look-up always compares the name itself.
    by_hash: HashMap<u64, IssuePos>,
    collisions: HashMap<u64, Vec<IssuePos>>,
    /// Positions of each key's issuances, ascending.
    by_key: HashMap<KeyId, Vec<IssuePos>>,
    /// Changes whenever a key's holders change (see [`IssueLog::holders_version`]).
    versions: HashMap<KeyId, u64>,
    hasher: RandomState,
    /// Every node name in issue order, ASCII-lowercased, each followed by `\n`: a search reads
    /// this one buffer instead of a million separate strings (`containing`).
    names: Vec<u8>,
    /// Where each name starts in `names`.
    name_starts: Vec<u32>,
}

impl PartialEq for IssueLog {
    fn eq(&self, other: &Self) -> bool {
        self.log == other.log
    }
}

impl Eq for IssueLog {}

impl IssueLog {
    /// Builds the log from issuances in issue order; `Err(node)` names a node given twice.
    pub fn from_ordered(issuances: Vec<Issuance>) -> Result<IssueLog, String> {
        let mut log = IssueLog::default();
        log.by_hash.reserve(issuances.len());
        // The issuances stay where they are (a million of them): `log` indexes them in place.
        log.log = issuances;
        log.name_starts.reserve(log.log.len());
        for pos in 0..log.log.len() {
            let hash = log.hasher.hash_one(log.log[pos].node.as_str());
            if !log.index_new(pos as IssuePos, hash) {
                return Err(log.log.swap_remove(pos).node);
            }
            push_name(&mut log.names, &mut log.name_starts, &log.log[pos].node);
        }
        // Every key's holders are new: one version each.
        log.versions = log.by_key.keys().map(|&key| (key, next_version())).collect();
        Ok(log)
    }

    pub fn len(&self) -> usize {
        self.log.len()
    }

    pub fn is_empty(&self) -> bool {
        self.log.is_empty()
    }

    pub fn all(&self) -> &[Issuance] {
        &self.log
    }

    pub fn at(&self, pos: IssuePos) -> &Issuance {
        &self.log[pos as usize]
    }

    pub fn get(&self, node: &str) -> Option<&Issuance> {
        self.position(node).map(|pos| self.at(pos))
    }

    /// Where `node`'s issuance stands in issue order.
    pub fn position(&self, node: &str) -> Option<IssuePos> {
        self.position_hashed(node, self.hasher.hash_one(node))
    }

    fn position_hashed(&self, node: &str, hash: u64) -> Option<IssuePos> {
        let first = *self.by_hash.get(&hash)?;
        if self.log[first as usize].node == node {
            return Some(first);
        }
        self.collisions.get(&hash)?.iter().copied().find(|&pos| self.log[pos as usize].node == node)
    }

    /// Positions of `key`'s issuances in issue order.
    pub fn of_key(&self, key: KeyId) -> &[IssuePos] {
        self.by_key.get(&key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Where the issuance at `pos` stands among its key's issuances (its index in [`Self::of_key`]).
    pub fn index_in_key(&self, pos: IssuePos) -> Option<usize> {
        self.of_key(self.log.get(pos as usize)?.key).binary_search(&pos).ok()
    }

    /// A number that changes whenever the holders of `key` change (an issuance recorded, taken
    /// back, or the log rebuilt); 0 for a key that never had one.
    pub fn holders_version(&self, key: KeyId) -> u64 {
        self.versions.get(&key).copied().unwrap_or(0)
    }

    /// Appends an issuance of a node not in the log.
    pub fn push(&mut self, issuance: Issuance) {
        let pos = self.log.len() as IssuePos;
        let hash = self.hasher.hash_one(issuance.node.as_str());
        self.index(pos, &issuance, hash);
        self.versions.insert(issuance.key, next_version());
        push_name(&mut self.names, &mut self.name_starts, &issuance.node);
        self.log.push(issuance);
    }

    /// Positions, ascending, of the issuances whose node name contains `text` (ASCII letters in
    /// either case, as SQL's `LIKE '%text%'`); every position for an empty text.
    pub fn containing(&self, text: &str) -> Vec<IssuePos> {
        let needle = text.to_ascii_lowercase().into_bytes();
        if needle.is_empty() {
            return (0..self.log.len() as IssuePos).collect();
        }
        // A name never holds the separator: a text with one would match across two names.
        if needle.contains(&b'\n') {
            return vec![];
        }
        let mut found = vec![];
        let mut from = 0;
        while let Some(offset) = find_bytes(&self.names[from..], &needle) {
            let at = from + offset;
            let pos = self.name_starts.partition_point(|&start| start as usize <= at) - 1;
            found.push(pos as IssuePos);
            // Go on from the next name: one match per name.
            from = self.name_starts.get(pos + 1).map_or(self.names.len(), |&start| start as usize);
        }
        found
    }

    fn index(&mut self, pos: IssuePos, issuance: &Issuance, hash: u64) {
        self.index_parts(pos, issuance.key, hash);
    }

    /// Indexes the issuance at `pos` unless its node is indexed already (false then): one probe
    /// of the hash table, as this runs a million times at start.
    fn index_new(&mut self, pos: IssuePos, hash: u64) -> bool {
        let node = &self.log[pos as usize].node;
        match self.by_hash.entry(hash) {
            std::collections::hash_map::Entry::Vacant(vacant) => {
                vacant.insert(pos);
            }
            std::collections::hash_map::Entry::Occupied(first) => {
                let others = self.collisions.get(&hash).map(Vec::as_slice).unwrap_or(&[]);
                if std::iter::once(*first.get()).chain(others.iter().copied()).any(|p| self.log[p as usize].node == *node) {
                    return false;
                }
                self.collisions.entry(hash).or_default().push(pos);
            }
        }
        let key = self.log[pos as usize].key;
        self.by_key.entry(key).or_default().push(pos);
        true
    }

    fn index_parts(&mut self, pos: IssuePos, key: KeyId, hash: u64) {
        if self.by_hash.try_insert_pos(hash, pos) {
            self.collisions.entry(hash).or_default().push(pos);
        }
        self.by_key.entry(key).or_default().push(pos);
    }

    /// Takes back `node`'s issuance. The newest (the usual case: an issuance that could not be
    /// committed) goes in constant time; an older one re-indexes the log.
    pub fn remove(&mut self, node: &str) -> Option<Issuance> {
        let pos = self.position(node)?;
        if pos as usize + 1 == self.log.len() {
            let issuance = self.log.pop().expect("pos is the last");
            let hash = self.hasher.hash_one(issuance.node.as_str());
            self.unindex(pos, &issuance, hash);
            let start = self.name_starts.pop().expect("every issuance has a name");
            self.names.truncate(start as usize);
            return Some(issuance);
        }
        let mut rest = std::mem::take(&mut self.log);
        let issuance = rest.remove(pos as usize);
        let key = issuance.key;
        let versions = std::mem::take(&mut self.versions);
        *self = IssueLog::from_ordered(rest).expect("the log held each node once");
        // Keys untouched by the removal keep their versions; the changed key gets a new one.
        for (k, v) in versions {
            self.versions.insert(k, v);
        }
        self.versions.insert(key, next_version());
        Some(issuance)
    }

    fn unindex(&mut self, pos: IssuePos, issuance: &Issuance, hash: u64) {
        let shared = self.collisions.get_mut(&hash);
        match shared {
            Some(others) if self.by_hash.get(&hash) == Some(&pos) => {
                let next = others.remove(0);
                if others.is_empty() {
                    self.collisions.remove(&hash);
                }
                self.by_hash.insert(hash, next);
            }
            Some(others) => {
                others.retain(|&p| p != pos);
                if others.is_empty() {
                    self.collisions.remove(&hash);
                }
            }
            None => {
                self.by_hash.remove(&hash);
            }
        }
        if let Some(positions) = self.by_key.get_mut(&issuance.key) {
            positions.retain(|&p| p != pos);
        }
        self.versions.insert(issuance.key, next_version());
    }
}

/// A stored issuance row that does not read back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("database holds a malformed issuance row (line {line})")]
pub struct MalformedIssuanceRow {
    pub line: usize,
}

/// One stored issuance as a line of text (`rowid key_id issued_at node`), as the issuer reads a
/// page of them from SQLite in one value. The node comes last: nothing after it needs splitting.
pub fn issuance_line(rowid: i64, issuance: &Issuance) -> String {
    format!("{rowid} {} {} {}", issuance.key.0, issuance.issued_at.timestamp(), issuance.node)
}

/// Appends the issuances of a page of [`issuance_line`]s (separated by `\n`) in rowid order, the
/// order they were written (issue order), and returns the page's last rowid (0 for none). SQLite
/// hands the lines over in rowid order in practice; were they ever not, they are sorted.
pub fn read_issuance_lines(page: &str, out: &mut Vec<Issuance>) -> Result<i64, MalformedIssuanceRow> {
    let first = out.len();
    let mut rowids: Vec<i64> = Vec::with_capacity(page.len() / 24);
    for (line, text) in page.split('\n').enumerate() {
        let Some((rowid, issuance)) = issuance_of_line(text) else {
            out.truncate(first);
            return Err(MalformedIssuanceRow { line: line + 1 });
        };
        rowids.push(rowid);
        out.push(issuance);
    }
    if !rowids.windows(2).all(|w| w[0] < w[1]) {
        let mut page: Vec<(i64, Issuance)> = rowids.iter().copied().zip(out.drain(first..)).collect();
        page.sort_by_key(|(rowid, _)| *rowid);
        out.extend(page.into_iter().map(|(_, issuance)| issuance));
        rowids.sort_unstable();
    }
    Ok(rowids.last().copied().unwrap_or(0))
}

fn issuance_of_line(text: &str) -> Option<(i64, Issuance)> {
    let mut fields = text.splitn(4, ' ');
    let mut number = || fields.next()?.parse::<i64>().ok();
    let (rowid, key, secs) = (number()?, number()?, number()?);
    let issued_at = chrono::DateTime::from_timestamp(secs, 0)?;
    let node = fields.next().filter(|n| !n.is_empty())?.to_string();
    Some((rowid, Issuance { node, key: KeyId(key as u64), issued_at }))
}

/// Appends `node`, lowercased and followed by `\n`, to the names buffer.
fn push_name(names: &mut Vec<u8>, starts: &mut Vec<u32>, node: &str) {
    starts.push(names.len() as u32);
    names.extend(node.bytes().map(|b| b.to_ascii_lowercase()));
    names.push(b'\n');
}

/// Where `needle` (not empty) first occurs in `haystack`. Eight bytes at a time look for its
/// first byte (the bit trick that finds a zero byte in a word), then candidates are compared:
/// several times faster in wasm than testing byte by byte.
fn find_bytes(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let (first, n) = (needle[0], needle.len());
    let end = (haystack.len() + 1).checked_sub(n)?;
    let matches_at = |i: usize| &haystack[i..i + n] == needle;
    let pattern = ONES * first as u64;
    let mut i = 0;
    while i + 8 <= end {
        let word = u64::from_le_bytes(haystack[i..i + 8].try_into().expect("eight bytes")) ^ pattern;
        // A high bit set for each byte of the word equal to `first` (and none for others before it).
        let mut candidates = word.wrapping_sub(ONES) & !word & HIGHS;
        while candidates != 0 {
            let at = i + (candidates.trailing_zeros() / 8) as usize;
            if matches_at(at) {
                return Some(at);
            }
            candidates &= candidates - 1;
        }
        i += 8;
    }
    (i..end).find(|&at| haystack[at] == first && matches_at(at))
}

/// `HashMap::try_insert` for positions: true when the hash is taken already (nothing inserted).
trait TryInsertPos {
    fn try_insert_pos(&mut self, hash: u64, pos: IssuePos) -> bool;
}

impl TryInsertPos for HashMap<u64, IssuePos> {
    fn try_insert_pos(&mut self, hash: u64, pos: IssuePos) -> bool {
        match self.entry(hash) {
            std::collections::hash_map::Entry::Occupied(_) => true,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(pos);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::any;

    fn issuance(node: &str, key: u64, secs: i64) -> Issuance {
        Issuance { node: node.to_string(), key: KeyId(key), issued_at: chrono::DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap() }
    }

    /// A log whose every name hashes alike: look-ups and removals must still find each node.
    fn colliding(nodes: &[&str]) -> IssueLog {
        let mut log = IssueLog::default();
        for (i, node) in nodes.iter().enumerate() {
            let issuance = issuance(node, 1 + i as u64 % 2, i as i64);
            log.index(i as IssuePos, &issuance, 7);
            log.log.push(issuance);
        }
        log
    }

    #[test]
    fn every_node_is_found_even_when_hashes_collide() {
        let log = colliding(&["a.os", "b.os", "c.os"]);
        assert_eq!(log.position_hashed("a.os", 7), Some(0));
        assert_eq!(log.position_hashed("c.os", 7), Some(2));
        assert_eq!(log.position_hashed("d.os", 7), None);
    }

    #[test]
    fn removal_of_a_colliding_name_keeps_the_others() {
        let mut log = colliding(&["a.os", "b.os", "c.os"]);
        let last = log.log.pop().unwrap();
        log.unindex(2, &last, 7);
        assert_eq!(log.collisions[&7], vec![1]);
        let first = log.log[0].clone();
        // Unindexing the first holder of the hash promotes the next one.
        log.unindex(0, &first, 7);
        assert_eq!(log.by_hash[&7], 1);
        assert!(!log.collisions.contains_key(&7));
        assert_eq!(log.position_hashed("b.os", 7), Some(1));
    }

    proptest::proptest! {
        /// Stored rows read back as they were written, in rowid order, whatever order the
        /// database hands the lines over in.
        #[test]
        fn issuance_lines_read_back(
            rows in proptest::collection::vec(("[a-z0-9][a-z0-9._-]{0,20}", 1u64..500, 0i64..4_000_000_000), 1..50),
            reversed: bool,
        ) {
            let issuances: Vec<Issuance> = rows
                .iter()
                .map(|(node, key, secs)| Issuance { node: node.clone(), key: KeyId(*key), issued_at: chrono::DateTime::from_timestamp(*secs, 0).unwrap() })
                .collect();
            let mut lines: Vec<String> = issuances.iter().enumerate().map(|(i, x)| issuance_line(3 * i as i64 + 1, x)).collect();
            if reversed {
                lines.reverse();
            }
            let mut out = vec![];
            let last = read_issuance_lines(&lines.join("\n"), &mut out).unwrap();
            proptest::prop_assert_eq!(last, 3 * (issuances.len() as i64 - 1) + 1);
            proptest::prop_assert_eq!(out, issuances);
        }
    }

    proptest::proptest! {
        /// The word-at-a-time search finds what a plain search finds.
        #[test]
        fn find_bytes_agrees_with_a_plain_search(haystack in "[ab\n]{0,40}", needle in "[ab]{1,4}") {
            let plain = haystack.as_bytes().windows(needle.len()).position(|w| w == needle.as_bytes());
            proptest::prop_assert_eq!(find_bytes(haystack.as_bytes(), needle.as_bytes()), plain);
        }

        /// A search finds exactly the names that contain the text, ASCII letters in either case.
        #[test]
        fn containing_agrees_with_each_name(
            nodes in proptest::collection::btree_set("[a-c.]{1,6}", 0..30),
            text in "[a-cA-C.\n]{0,3}",
            removals in proptest::collection::vec(any::<proptest::sample::Index>(), 0..3),
        ) {
            let issuances: Vec<Issuance> = nodes.iter().enumerate().map(|(i, n)| issuance(n, 1, i as i64)).collect();
            let mut log = IssueLog::from_ordered(issuances).unwrap();
            for removal in removals {
                if !log.is_empty() {
                    let node = log.at(removal.index(log.len()) as IssuePos).node.clone();
                    log.remove(&node);
                }
            }
            let expected: Vec<IssuePos> = (0..log.len() as IssuePos)
                .filter(|&pos| !text.contains('\n') && log.at(pos).node.contains(&text.to_ascii_lowercase()))
                .collect();
            proptest::prop_assert_eq!(log.containing(&text), expected);
        }
    }

    #[test]
    fn malformed_issuance_lines_are_refused() {
        let mut out = vec![];
        assert_eq!(read_issuance_lines("1 2 3 a.os\n2 x 3 b.os", &mut out), Err(MalformedIssuanceRow { line: 2 }));
        assert_eq!(read_issuance_lines("1 2 3", &mut out), Err(MalformedIssuanceRow { line: 1 }));
        assert_eq!(read_issuance_lines("1 2 3 ", &mut out), Err(MalformedIssuanceRow { line: 1 }));
        assert!(out.is_empty());
    }

    #[test]
    fn positions_versions_and_removal() {
        let mut log = IssueLog::from_ordered(vec![issuance("a.os", 1, 0), issuance("b.os", 2, 1), issuance("c.os", 1, 2)]).unwrap();
        assert_eq!(log.of_key(KeyId(1)), &[0, 2]);
        assert_eq!(log.index_in_key(2), Some(1));
        let (v1, v2) = (log.holders_version(KeyId(1)), log.holders_version(KeyId(2)));
        assert!(v1 > 0 && v2 > 0);
        assert_eq!(log.holders_version(KeyId(9)), 0);
        // The newest goes in constant time; an older one re-indexes.
        assert_eq!(log.remove("c.os").map(|i| i.key), Some(KeyId(1)));
        assert_ne!(log.holders_version(KeyId(1)), v1);
        assert_eq!(log.holders_version(KeyId(2)), v2);
        log.push(issuance("d.os", 2, 3));
        assert_eq!(log.remove("a.os").map(|i| i.node), Some("a.os".to_string()));
        assert_eq!(log.all().iter().map(|i| i.node.as_str()).collect::<Vec<_>>(), vec!["b.os", "d.os"]);
        assert_eq!(log.of_key(KeyId(2)), &[0, 1]);
        assert_eq!(log.position("d.os"), Some(1));
        assert!(log.get("a.os").is_none() && log.of_key(KeyId(1)).is_empty());
        assert!(IssueLog::from_ordered(vec![issuance("a.os", 1, 0), issuance("a.os", 2, 1)]).is_err());
    }
}
