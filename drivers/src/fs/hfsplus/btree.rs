//! HFS+ B-trees (catalog, extents overflow, attributes): nodes checked as they are read, a
//! descent to the leaf where a key belongs, and a bounded walk along the leaf chain.
//!
//! Every node number is checked against the tree's node count, every record offset against
//! the node, the descent is bounded by the tree depth and the leaf walk by the node count, so a
//! corrupt tree (a cycle in the leaf chain, a child pointer to itself) ends in an error.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::be16;
use super::be32;
use super::volume::{read_runs, Run, Vol};
use crate::fs::FsError;

/// A visitor of leaf records `(key, data)`; `false` stops the walk.
pub(super) type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool, FsError> + 'a;

/// Node kinds (`kBTLeafNode`, `kBTIndexNode`, `kBTHeaderNode`).
const LEAF: i8 = -1;
const INDEX: i8 = 0;
const HEADER: i8 = 1;
/// Nodes kept in each tree's cache.
const CACHED_NODES: usize = 1024;
/// Deepest tree accepted (real trees have a handful of levels).
const MAX_DEPTH: u16 = 32;
/// `kBTVariableIndexKeysMask`.
const VARIABLE_INDEX_KEYS: u32 = 4;

/// One parsed node.
pub(super) struct Node {
    bytes: Vec<u8>,
    /// Source offset of the node's first byte, for errors.
    pub offset: u64,
    pub kind: i8,
    pub height: u8,
    pub forward: u32,
    /// Record start offsets, then the free-space offset.
    offsets: Vec<usize>,
}

impl Node {
    pub fn records(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Record `i`'s bytes.
    pub fn record(&self, i: usize) -> &[u8] {
        &self.bytes[self.offsets[i]..self.offsets[i + 1]]
    }
}

/// A B-tree file.
pub(super) struct Tree {
    /// `catalog`, `extents overflow`, `attributes`.
    pub name: &'static str,
    runs: Vec<Run>,
    pub node_size: u32,
    root: u32,
    depth: u16,
    total_nodes: u32,
    max_key_len: u16,
    variable_index_keys: bool,
    /// `kHFSBinaryCompare` (0xBC) on HFSX: names compare as code units.
    pub binary_compare: bool,
    cache: Mutex<HashMap<u32, Arc<Node>>>,
}

impl Tree {
    /// Opens the tree whose file is mapped by `runs`, from its header node.
    pub fn open(vol: &Vol, name: &'static str, runs: Vec<Run>) -> Result<Self, FsError> {
        let mut head = [0u8; 14 + 106];
        read_runs(vol, &runs, 0, &mut head, name)?;
        let at = runs.first().map_or(0, |r| r.physical);
        if head[8] as i8 != HEADER {
            return Err(vol.corrupt(
                at,
                format!(
                    "{name} B-tree: node 0 is of kind {} (not a header node)",
                    head[8] as i8
                ),
            ));
        }
        let h = &head[14..];
        let node_size = u32::from(be16(h, 18));
        if !(512..=32768).contains(&node_size) || !node_size.is_power_of_two() {
            return Err(vol.corrupt(at, format!("{name} B-tree: node size {node_size}")));
        }
        let fork_len = runs.iter().map(|r| r.length).sum::<u64>();
        let total_nodes = be32(h, 22);
        if u64::from(total_nodes) * u64::from(node_size) > fork_len {
            return Err(vol.corrupt(
                at,
                format!(
                    "{name} B-tree: {total_nodes} nodes of {node_size} bytes do not fit its {fork_len}-byte file"
                ),
            ));
        }
        let depth = be16(h, 0);
        if depth > MAX_DEPTH {
            return Err(vol.corrupt(at, format!("{name} B-tree: depth {depth}")));
        }
        let root = be32(h, 2);
        if root >= total_nodes || (depth > 0 && root == 0) {
            return Err(vol.corrupt(
                at,
                format!("{name} B-tree: root node {root} of {total_nodes}"),
            ));
        }
        Ok(Self {
            name,
            runs,
            node_size,
            root,
            depth,
            total_nodes,
            max_key_len: be16(h, 20),
            variable_index_keys: be32(h, 38) & VARIABLE_INDEX_KEYS != 0,
            binary_compare: h[37] == 0xBC,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Whether the tree holds no records.
    pub fn is_empty(&self) -> bool {
        self.depth == 0 || self.root == 0
    }

    /// Node `n`, from the cache or the disk.
    pub fn node(&self, vol: &Vol, n: u32) -> Result<Arc<Node>, FsError> {
        let lock = |c: &Mutex<HashMap<u32, Arc<Node>>>| {
            // A panic under the lock leaves a cache of checked nodes: still usable.
            c.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&n)
                .cloned()
        };
        if let Some(node) = lock(&self.cache) {
            return Ok(node);
        }
        if n >= self.total_nodes {
            return Err(vol.corrupt(
                0,
                format!(
                    "{} B-tree: node {n} past its {} nodes",
                    self.name, self.total_nodes
                ),
            ));
        }
        let size = self.node_size as usize;
        let mut bytes = vec![0u8; size];
        let logical = u64::from(n) * u64::from(self.node_size);
        read_runs(vol, &self.runs, logical, &mut bytes, self.name)?;
        let i = self
            .runs
            .partition_point(|r| r.logical + r.length <= logical);
        let offset = self
            .runs
            .get(i)
            .map_or(0, |r| r.physical + (logical - r.logical));
        let bad =
            |what: String| vol.corrupt(offset, format!("{} B-tree node {n}: {what}", self.name));
        let count = usize::from(be16(&bytes, 10));
        if 14 + 2 * (count + 1) > size {
            return Err(bad(format!("{count} records do not fit")));
        }
        let mut offsets = Vec::with_capacity(count + 1);
        let table_start = size - 2 * (count + 1);
        for i in 0..=count {
            let o = usize::from(be16(&bytes, size - 2 * (i + 1)));
            let prev = offsets.last().copied().unwrap_or(14);
            if o < prev || o > table_start {
                return Err(bad(format!("record {i} at offset {o}")));
            }
            offsets.push(o);
        }
        let node = Arc::new(Node {
            offset,
            kind: bytes[8] as i8,
            height: bytes[9],
            forward: be32(&bytes, 0),
            offsets,
            bytes,
        });
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= CACHED_NODES {
            cache.clear();
        }
        cache.insert(n, node.clone());
        Ok(node)
    }

    /// Splits a record into its key (without the length field) and its data.
    pub fn split<'a>(
        &self,
        vol: &Vol,
        node: &Node,
        rec: &'a [u8],
    ) -> Result<(&'a [u8], &'a [u8]), FsError> {
        let key_len = usize::from(be16(rec, 0));
        let stored = if node.kind == INDEX && !self.variable_index_keys {
            usize::from(self.max_key_len)
        } else {
            key_len
        };
        // Keys are padded to an even length.
        let data_at = (2 + stored + 1) & !1;
        if rec.len() < 2 || key_len > stored || data_at > rec.len() {
            return Err(vol.corrupt(
                node.offset,
                format!(
                    "{} B-tree: key of {key_len} bytes in a {}-byte record",
                    self.name,
                    rec.len()
                ),
            ));
        }
        Ok((&rec[2..2 + key_len], &rec[data_at..]))
    }

    /// The leaf node where records with keys `>= target` begin; `cmp(key)` orders a stored key
    /// against the target. `None` for an empty tree.
    pub fn find_leaf(
        &self,
        vol: &Vol,
        cmp: &dyn Fn(&[u8]) -> Ordering,
    ) -> Result<Option<u32>, FsError> {
        if self.is_empty() {
            return Ok(None);
        }
        let mut n = self.root;
        let mut height = None;
        for _ in 0..=self.depth {
            let node = self.node(vol, n)?;
            if let Some(h) = height {
                if node.height.checked_add(1) != Some(h) {
                    return Err(vol.corrupt(
                        node.offset,
                        format!(
                            "{} B-tree node {n}: height {} under height {h}",
                            self.name, node.height
                        ),
                    ));
                }
            }
            height = Some(node.height);
            match node.kind {
                LEAF => return Ok(Some(n)),
                INDEX => {}
                kind => {
                    return Err(vol.corrupt(
                        node.offset,
                        format!("{} B-tree node {n}: kind {kind} inside the tree", self.name),
                    ))
                }
            }
            let mut child = None;
            for i in 0..node.records() {
                let (key, data) = self.split(vol, &node, node.record(i))?;
                if i > 0 && cmp(key) == Ordering::Greater {
                    break;
                }
                if data.len() < 4 {
                    return Err(vol.corrupt(
                        node.offset,
                        format!("{} B-tree: short index record", self.name),
                    ));
                }
                child = Some(be32(data, 0));
            }
            let Some(child) = child else {
                return Err(vol.corrupt(
                    node.offset,
                    format!("{} B-tree node {n}: empty index node", self.name),
                ));
            };
            n = child;
        }
        Err(vol.corrupt(
            0,
            format!("{} B-tree: deeper than its depth {}", self.name, self.depth),
        ))
    }

    /// Calls `f(key, data)` for each leaf record from node `start` on, following the leaf
    /// chain, until `f` returns `false`. At most as many nodes as the tree has are visited.
    pub fn walk_leaves(&self, vol: &Vol, start: u32, f: &mut Visit<'_>) -> Result<(), FsError> {
        let mut n = start;
        for _ in 0..self.total_nodes {
            let node = self.node(vol, n)?;
            if node.kind != LEAF {
                return Err(vol.corrupt(
                    node.offset,
                    format!(
                        "{} B-tree: node {n} in the leaf chain is of kind {}",
                        self.name, node.kind
                    ),
                ));
            }
            for i in 0..node.records() {
                let (key, data) = self.split(vol, &node, node.record(i))?;
                if !f(key, data)? {
                    return Ok(());
                }
            }
            if node.forward == 0 {
                return Ok(());
            }
            n = node.forward;
        }
        Err(vol.corrupt(0, format!("{} B-tree: the leaf chain loops", self.name)))
    }

    /// The data of the record whose key compares `Equal`, if any.
    pub fn lookup(
        &self,
        vol: &Vol,
        cmp: &dyn Fn(&[u8]) -> Ordering,
    ) -> Result<Option<Vec<u8>>, FsError> {
        let Some(leaf) = self.find_leaf(vol, cmp)? else {
            return Ok(None);
        };
        let mut found = None;
        self.walk_leaves(vol, leaf, &mut |key, data| match cmp(key) {
            Ordering::Less => Ok(true),
            Ordering::Equal => {
                found = Some(data.to_vec());
                Ok(false)
            }
            Ordering::Greater => Ok(false),
        })?;
        Ok(found)
    }
}
