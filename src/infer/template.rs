//! Endpoint templating: concrete request paths become endpoint templates, learnt per host
//! (`/api/v1/users/48213/orders` → `/api/v1/users/{id}/orders`).
//!
//! Owns the path normalisation, the segment shapes and the per-host learner. Paths are the
//! `path` component of RFC 3986 §3.3; the template syntax is the OpenAPI 3.1 path template
//! (`{name}` stands for one whole segment).
//!
//! # Normalisation
//! Anything from `?` or `#` on is dropped; empty segments are ignored, so `/a//b/` is `/a/b`
//! (servers route them alike, and a trailing slash is not a new endpoint); `.` and `..` are
//! resolved as in RFC 3986 §5.2.4 (`..` never climbs above the root); matrix parameters
//! (`;jsessionid=…`, RFC 3986 §3.3) are cut from each segment. Segments are compared raw (not
//! percent-decoded) and case-sensitively. The empty path is `/`.
//!
//! # Shapes
//! A segment that is a value by its shape alone becomes a parameter without any learning
//! ([`segment_shape`]): integers and ULID/KSUID → `{id}`, UUIDs → `{uuid}`, hex digests →
//! `{hash}`, long base64url tokens (and JWTs) → `{token}`, ISO dates → `{date}`, e-mail
//! addresses (also with `%40`) → `{email}`, mixed letter/digit codes such as `ABC-12345`,
//! `SKU-99812-XL` or `a1b2c3d4e5` → `{code}`, file names whose stem is any of these
//! (`48213.pdf`, `image_123.png`) → `{file}`, and segments longer than
//! [`MAX_LITERAL_BYTES`] → `{value}`. Version segments (`v1`, `v2beta1`) and plain words
//! (`me`, `orders`, `export`, `report.pdf`) are not values by shape.
//!
//! # Cardinality learning
//! For every host a trie of what was seen is kept: one node per prefix, its children keyed by
//! the literal segment or, for shaped segments, by the shape name. A position (all values one
//! segment below one prefix) is a parameter, written `{param}`, when the literal values seen
//! there (`L` distinct values, over the union of all prefixes the template merges) are
//! - more than `param_threshold / 2` values that are not plain words (they contain digits,
//!   dots, `@`, `%`, … — usernames like `jdoe42`, slugs, file names), or
//! - more than `param_threshold` values, unless at least half of them are *collections*:
//!   literals under which an id-like segment (a shape, or a position collapsed at
//!   `max_literals`) was seen. A REST
//!   API's resource names (`/api/v1/users/{id}`, `/api/v1/orders/{id}`, …) are collections;
//!   usernames (`/users/alice/repos`) are not; or
//! - more than `max_literals` values: the node stops storing them (bounded memory) and the
//!   position is a parameter for good.
//!
//! The first segment of a path is exempt from the first two rules: a host's top level holds its
//! sections, pages and well-known files (`/api`, `/login`, `/favicon.ico`, …), rarely values.
//!
//! At a parameter position every value — shaped ones too — is written `{param}` (so that
//! `/users/alice` and `/users/42` do not become two clashing templates), and the positions below
//! it are decided over the union of the subtrees of all its values. Otherwise a shaped segment
//! is written as its shape and a literal as itself. A template therefore always has exactly the
//! depth of its path, and two paths that differ in a position judged literal never share a
//! template.
//!
//! **Order independence.** The trie stores the set of distinct (shape-keyed) paths; the only
//! structural change, collapsing a node with more than `max_literals` literal children into its
//! union, is monotone (more paths never undo it) and a union, so the trie after any order of the
//! same set of paths is the same, and so are the decisions, which are computed from the trie
//! when a path is resolved rather than frozen when it was first seen. [`Templater::observe`]
//! answers with what is known at that moment; [`Templater::resolve`] after the last
//! observation is the order-independent answer (the inventory re-templates with it).
//! [`Templater::merge`] is the same union, so merging per-worker learners equals learning
//! everything in one. The only exception is a full node budget: which paths were dropped
//! depends on the order (counted in [`TemplateStats::nodes_dropped`]).
//!
//! **Cost.** Learning a path is one trie walk (at most `max_segments` nodes, a binary search per
//! node). Resolving walks a *frontier* of trie nodes at the depth of each segment: one node per
//! segment in the common case, the nodes of all values below a learnt parameter otherwise. The
//! frontier is cut at [`FRONTIER_MAX`] nodes and a union at [`SCAN_MAX`] literals, taken in the
//! canonical (key) order so that the cut, too, depends only on the set of paths; after
//! [`WORK_MAX`] nodes and literals in one resolve the remaining segments are templated by shape
//! alone. A template decided on a cut is counted in [`TemplateStats::frontier_capped`].
//!
//! **Known failure modes.** A catalogue of more than `param_threshold` leaf resources with no
//! ids below them (`/api/health`, `/api/status`, … ) is merged into `/api/{param}`; up to
//! `param_threshold / 2` distinct non-word usernames (or `param_threshold` plain-word ones)
//! stay separate endpoints until more are seen; usernames under which ids appear
//! (`/tenants/acme/42`) count as collections; values in the first segment (`/alice`) are
//! learnt only at `max_literals`; several shapes at one literal position stay distinct
//! templates (`/files/{id}` and `/files/{hash}`).
use serde::Serialize;
use std::collections::HashMap;

/// Segments longer than this many bytes are values by shape (`{value}`): they are never stored
/// as literals, which bounds the bytes a trie node holds.
pub const MAX_LITERAL_BYTES: usize = 96;

/// Trie nodes a resolve follows at one depth (below learnt parameters, the nodes of all their
/// values), in their canonical order: the first ones by key, so a cut does not depend on the
/// order paths arrived in. Bounds the cost of one resolve.
pub const FRONTIER_MAX: usize = 128;
/// Literal children looked at when deciding one position over several nodes (same order).
pub const SCAN_MAX: usize = 512;
/// Frontier nodes plus literals one resolve looks at in all; the positions after it are
/// templated by shape alone (a deterministic cut as well).
pub const WORK_MAX: usize = 2048;

/// Parameter name of a position learnt by cardinality.
pub const LEARNT_PARAM: &str = "param";

/// Templating limits.
///
/// ```toml
/// [templates]
/// max_hosts = 4096
/// max_nodes_per_host = 8192
/// max_nodes_total = 262144
/// param_threshold = 12
/// max_literals = 128
/// max_segments = 32
/// ```
#[derive(Clone, Debug)]
pub struct TemplateConfig {
    /// Hosts learnt; the paths of further hosts are templated by shape only. Default 4096.
    pub max_hosts: usize,
    /// Trie nodes per host (one node per distinct prefix). Default 8192.
    pub max_nodes_per_host: usize,
    /// Trie nodes over all hosts (bounds memory: roughly 100 bytes plus the literal per
    /// node). Default 262 144.
    pub max_nodes_total: usize,
    /// Distinct plain-word literals at one position under one prefix beyond which the position
    /// is a parameter (non-word literals: half of it; see the module doc). Default 12.
    pub param_threshold: usize,
    /// Distinct literals stored per position; one more makes the position a parameter for
    /// good and frees them. At least `param_threshold + 1`. Default 128.
    pub max_literals: usize,
    /// Segments learnt per path; deeper segments are templated by shape only (the template
    /// keeps the path's depth). Default 32, at most 64.
    pub max_segments: usize,
}

impl Default for TemplateConfig {
    fn default() -> Self {
        TemplateConfig {
            max_hosts: 4096,
            max_nodes_per_host: 8192,
            max_nodes_total: 262_144,
            param_threshold: 12,
            max_literals: 128,
            max_segments: 32,
        }
    }
}

/// Templating counters.
#[derive(Default, Clone, Debug, Serialize)]
pub struct TemplateStats {
    /// Hosts learnt (current).
    pub hosts: u64,
    /// Trie nodes held (current).
    pub nodes: u64,
    /// Observations (or merged hosts) of a host not learnt because the host table was full.
    pub hosts_dropped: u64,
    /// Segments not learnt because a node budget (per host or total) was full.
    pub nodes_dropped: u64,
    /// Observations with more than `max_segments` segments (the tail was not learnt).
    pub deep_paths: u64,
    /// Positions that reached `max_literals` distinct literals and were collapsed.
    pub collapsed: u64,
    /// Observations whose template holds a parameter learnt by cardinality.
    pub learned_params: u64,
    /// Observations whose template was decided over only the first nodes (or literals) below a
    /// learnt parameter ([`FRONTIER_MAX`], [`SCAN_MAX`]).
    pub frontier_capped: u64,
}

impl TemplateStats {
    /// Adds another learner's counters.
    pub fn add(&mut self, o: &TemplateStats) {
        self.hosts += o.hosts;
        self.nodes += o.nodes;
        self.hosts_dropped += o.hosts_dropped;
        self.nodes_dropped += o.nodes_dropped;
        self.deep_paths += o.deep_paths;
        self.collapsed += o.collapsed;
        self.learned_params += o.learned_params;
        self.frontier_capped += o.frontier_capped;
    }
}

const NONE: u32 = u32::MAX;

/// One prefix. Children are kept sorted (binary search, and a deterministic layout).
#[derive(Clone, Debug, Default)]
struct Node {
    lits: Vec<(Box<str>, u32)>,
    shapes: Vec<(&'static str, u32)>,
    /// When collapsed: the one child every value goes to (`lits` and `shapes` are empty).
    wild: Option<u32>,
}

impl Node {
    fn collapsed(&self) -> bool {
        self.wild.is_some()
    }

    /// Whether an id-like value was seen below this node.
    fn has_value_child(&self) -> bool {
        self.wild.is_some() || !self.shapes.is_empty()
    }

    fn children(&self) -> impl Iterator<Item = u32> + '_ {
        self.lits
            .iter()
            .map(|c| c.1)
            .chain(self.shapes.iter().map(|c| c.1))
            .chain(self.wild)
    }
}

#[derive(Clone, Copy)]
enum Key<'a> {
    Lit(&'a str),
    Shape(&'static str),
}

/// One host's trie; node 0 is the root.
#[derive(Clone, Debug)]
struct Trie {
    nodes: Vec<Node>,
    free: Vec<u32>,
    live: usize,
}

/// Node budgets shared by the tries of one learner.
struct Budget<'a> {
    per_host: usize,
    total_live: &'a mut usize,
    total_max: usize,
    max_literals: usize,
    stats: &'a mut TemplateStats,
}

impl Trie {
    fn new() -> Self {
        Trie {
            nodes: vec![Node::default()],
            free: Vec::new(),
            live: 1,
        }
    }

    fn alloc(&mut self, b: &mut Budget) -> Option<u32> {
        if self.live >= b.per_host || *b.total_live >= b.total_max {
            b.stats.nodes_dropped += 1;
            return None;
        }
        self.live += 1;
        *b.total_live += 1;
        if let Some(i) = self.free.pop() {
            return Some(i);
        }
        let i = u32::try_from(self.nodes.len()).ok()?;
        self.nodes.push(Node::default());
        Some(i)
    }

    fn release(&mut self, i: u32, b: &mut Budget) {
        self.nodes[i as usize] = Node::default();
        self.free.push(i);
        self.live -= 1;
        *b.total_live -= 1;
    }

    /// The child of `n` for `key`, created if missing; `None` when the budget is spent.
    fn child_or_insert(&mut self, n: u32, key: Key, b: &mut Budget) -> Option<u32> {
        let node = &self.nodes[n as usize];
        if let Some(w) = node.wild {
            return Some(w);
        }
        match key {
            Key::Shape(s) => match node.shapes.binary_search_by(|c| c.0.cmp(s)) {
                Ok(i) => Some(node.shapes[i].1),
                Err(i) => {
                    let c = self.alloc(b)?;
                    self.nodes[n as usize].shapes.insert(i, (s, c));
                    Some(c)
                }
            },
            Key::Lit(l) => match node.lits.binary_search_by(|c| (*c.0).cmp(l)) {
                Ok(i) => Some(node.lits[i].1),
                Err(i) => {
                    let c = self.alloc(b)?;
                    self.nodes[n as usize].lits.insert(i, (l.into(), c));
                    if self.nodes[n as usize].lits.len() > b.max_literals {
                        return Some(self.collapse(n, b));
                    }
                    Some(c)
                }
            },
        }
    }

    /// Turns `n` into a parameter position: all its children are united into one, which is
    /// returned. Reuses a child as the union, so it needs no new node unless `n` has none.
    fn collapse(&mut self, n: u32, b: &mut Budget) -> u32 {
        if let Some(w) = self.nodes[n as usize].wild {
            return w;
        }
        b.stats.collapsed += 1;
        let node = std::mem::take(&mut self.nodes[n as usize]);
        let mut kids = node
            .lits
            .into_iter()
            .map(|c| c.1)
            .chain(node.shapes.into_iter().map(|c| c.1));
        let w = match kids.next() {
            Some(w) => w,
            // Only reached from a merge with a collapsed node; without budget the position
            // simply stays empty.
            None => match self.alloc(b) {
                Some(w) => w,
                None => return NONE,
            },
        };
        self.nodes[n as usize].wild = Some(w);
        for k in kids {
            self.union(k, w, b);
        }
        w
    }

    /// Merges the subtree at `src` into the one at `dst` and frees `src`'s nodes that are no
    /// longer needed. Recursion depth is bounded by the trie depth (`max_segments`).
    fn union(&mut self, src: u32, dst: u32, b: &mut Budget) {
        if src == NONE || dst == NONE || src == dst {
            return;
        }
        let s = std::mem::take(&mut self.nodes[src as usize]);
        self.release(src, b);
        if let Some(sw) = s.wild {
            let dw = self.collapse(dst, b);
            if dw == NONE {
                self.nodes[dst as usize].wild = Some(sw);
            } else {
                self.union(sw, dw, b);
            }
            return;
        }
        for (k, c) in s.lits {
            self.adopt(dst, Key::Lit(&k), c, b);
        }
        for (k, c) in s.shapes {
            self.adopt(dst, Key::Shape(k), c, b);
        }
        if self.nodes[dst as usize].lits.len() > b.max_literals {
            self.collapse(dst, b);
        }
    }

    /// Makes the subtree `c` the child `key` of `dst`, uniting it with an existing one.
    fn adopt(&mut self, dst: u32, key: Key, c: u32, b: &mut Budget) {
        let node = &mut self.nodes[dst as usize];
        if let Some(w) = node.wild {
            return self.union(c, w, b);
        }
        match key {
            Key::Shape(s) => match node.shapes.binary_search_by(|x| x.0.cmp(s)) {
                Ok(i) => {
                    let d = node.shapes[i].1;
                    self.union(c, d, b)
                }
                Err(i) => node.shapes.insert(i, (s, c)),
            },
            Key::Lit(l) => match node.lits.binary_search_by(|x| (*x.0).cmp(l)) {
                Ok(i) => {
                    let d = node.lits[i].1;
                    self.union(c, d, b)
                }
                Err(i) => node.lits.insert(i, (l.into(), c)),
            },
        }
    }

    /// Copies `other`'s subtree at `o` into this trie's subtree at `d` (a union).
    fn graft(&mut self, other: &Trie, o: u32, d: u32, b: &mut Budget) {
        let on = &other.nodes[o as usize];
        if let Some(ow) = on.wild {
            let dw = self.collapse(d, b);
            if dw != NONE {
                self.graft(other, ow, dw, b);
            }
            return;
        }
        for (k, oc) in &on.lits {
            if let Some(dc) = self
                .child_or_insert(d, Key::Lit(k), b)
                .filter(|&c| c != NONE)
            {
                self.graft(other, *oc, dc, b);
            }
        }
        for (k, oc) in &on.shapes {
            if let Some(dc) = self
                .child_or_insert(d, Key::Shape(k), b)
                .filter(|&c| c != NONE)
            {
                self.graft(other, *oc, dc, b);
            }
        }
    }
}

/// Endpoint templates learnt per host. One per worker; [`Templater::merge`] unites them.
#[derive(Clone, Debug)]
pub struct Templater {
    cfg: TemplateConfig,
    hosts: HashMap<Box<str>, Trie>,
    total_nodes: usize,
    stats: TemplateStats,
    segs: Vec<Seg>,
    frontier: Vec<u32>,
    next: Vec<u32>,
}

/// One normalised segment: byte range in the path and its shape.
#[derive(Clone, Copy, Debug)]
struct Seg {
    start: usize,
    end: usize,
    shape: Option<&'static str>,
}

/// Splits `path` into normalised segments (see the module doc) and classifies them.
fn segments(path: &str, out: &mut Vec<Seg>) {
    out.clear();
    let end = path
        .bytes()
        .position(|c| c == b'?' || c == b'#')
        .unwrap_or(path.len());
    // An absolute-form target (RFC 9112 §3.2.2): the path starts after the authority.
    let mut pos = 0;
    for scheme in ["http://", "https://"] {
        // Compared as bytes: a target's first bytes need not end a character.
        let b = path.as_bytes();
        if b.get(..scheme.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(scheme.as_bytes()))
        {
            pos = path
                .get(scheme.len()..end)
                .and_then(|authority| authority.find('/'))
                .map_or(end, |i| scheme.len() + i);
        }
    }
    let b = path.as_bytes();
    while pos <= end {
        let start = pos;
        let stop = b[start..end]
            .iter()
            .position(|&c| c == b'/')
            .map_or(end, |i| start + i);
        pos = stop + 1;
        let cut = b[start..stop]
            .iter()
            .position(|&c| c == b';')
            .map_or(stop, |i| start + i);
        match &path[start..cut] {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            seg => out.push(Seg {
                start,
                end: cut,
                shape: segment_shape(seg),
            }),
        }
    }
}

impl Templater {
    /// A learner with nothing learnt.
    pub fn new(mut cfg: TemplateConfig) -> Self {
        cfg.max_segments = cfg.max_segments.clamp(1, 64);
        cfg.param_threshold = cfg.param_threshold.max(1);
        cfg.max_literals = cfg.max_literals.max(cfg.param_threshold + 1);
        cfg.max_nodes_per_host = cfg.max_nodes_per_host.max(1);
        Templater {
            cfg,
            hosts: HashMap::new(),
            total_nodes: 0,
            stats: TemplateStats::default(),
            segs: Vec::new(),
            frontier: Vec::new(),
            next: Vec::new(),
        }
    }

    /// Learns from one request path (no query) of `host` and returns its template as known now.
    pub fn observe(&mut self, host: &str, path: &str) -> String {
        let mut out = String::with_capacity(path.len() + 8);
        self.observe_into(host, path, &mut out);
        out
    }

    /// [`Templater::observe`] writing the template into `out` (cleared first).
    pub fn observe_into(&mut self, host: &str, path: &str, out: &mut String) {
        let mut segs = std::mem::take(&mut self.segs);
        segments(path, &mut segs);
        if segs.len() > self.cfg.max_segments {
            self.stats.deep_paths += 1;
        }
        if !self.hosts.contains_key(host) {
            if self.hosts.len() >= self.cfg.max_hosts
                || self.total_nodes >= self.cfg.max_nodes_total
            {
                self.stats.hosts_dropped += 1;
            } else {
                self.hosts.insert(host.into(), Trie::new());
                self.total_nodes += 1;
            }
        }
        let mut b = Budget {
            per_host: self.cfg.max_nodes_per_host,
            total_live: &mut self.total_nodes,
            total_max: self.cfg.max_nodes_total,
            max_literals: self.cfg.max_literals,
            stats: &mut self.stats,
        };
        let mut trie = self.hosts.get_mut(host);
        if let Some(t) = trie.as_deref_mut() {
            let mut n = 0;
            for s in segs.iter().take(self.cfg.max_segments) {
                let key = match s.shape {
                    Some(sh) => Key::Shape(sh),
                    None => Key::Lit(&path[s.start..s.end]),
                };
                match t.child_or_insert(n, key, &mut b) {
                    Some(c) if c != NONE => n = c,
                    _ => break,
                }
            }
        }
        let r = render(
            &self.cfg,
            trie.as_deref(),
            path,
            &segs,
            out,
            &mut self.frontier,
            &mut self.next,
        );
        self.stats.learned_params += u64::from(r.learnt);
        self.stats.frontier_capped += u64::from(r.capped);
        self.segs = segs;
    }

    /// The template of `path` under everything learnt so far, without learning.
    pub fn resolve(&self, host: &str, path: &str) -> String {
        let mut segs = Vec::new();
        segments(path, &mut segs);
        let mut out = String::with_capacity(path.len() + 8);
        render(
            &self.cfg,
            self.hosts.get(host),
            path,
            &segs,
            &mut out,
            &mut Vec::new(),
            &mut Vec::new(),
        );
        out
    }

    /// Unites another learner's tries with this one's (hosts in name order, so that which
    /// hosts a full table refuses does not depend on hashing).
    pub fn merge(&mut self, other: &Templater) {
        let mut names: Vec<&Box<str>> = other.hosts.keys().collect();
        names.sort();
        for name in names {
            let Some(ot) = other.hosts.get(name) else {
                continue;
            };
            if !self.hosts.contains_key(name) {
                if self.hosts.len() >= self.cfg.max_hosts
                    || self.total_nodes >= self.cfg.max_nodes_total
                {
                    self.stats.hosts_dropped += 1;
                    continue;
                }
                self.hosts.insert(name.clone(), Trie::new());
                self.total_nodes += 1;
            }
            let mut b = Budget {
                per_host: self.cfg.max_nodes_per_host,
                total_live: &mut self.total_nodes,
                total_max: self.cfg.max_nodes_total,
                max_literals: self.cfg.max_literals,
                stats: &mut self.stats,
            };
            if let Some(t) = self.hosts.get_mut(name) {
                t.graft(ot, 0, 0, &mut b);
            }
        }
    }

    /// Counters, with the current number of hosts and nodes.
    pub fn stats(&self) -> TemplateStats {
        let mut s = self.stats.clone();
        s.hosts = self.hosts.len() as u64;
        s.nodes = self.total_nodes as u64;
        s
    }
}

/// What rendering a template found.
struct Rendered {
    /// It holds a learnt parameter.
    learnt: bool,
    /// A frontier or a union was cut.
    capped: bool,
}

/// Writes the template of `segs` into `out`.
fn render(
    cfg: &TemplateConfig,
    trie: Option<&Trie>,
    path: &str,
    segs: &[Seg],
    out: &mut String,
    frontier: &mut Vec<u32>,
    next: &mut Vec<u32>,
) -> Rendered {
    out.clear();
    frontier.clear();
    if trie.is_some() {
        frontier.push(0);
    }
    let mut r = Rendered {
        learnt: false,
        capped: false,
    };
    if segs.is_empty() {
        out.push('/');
        return r;
    }
    let mut scratch = Vec::new();
    let mut work = 0;
    for (depth, s) in segs.iter().enumerate() {
        out.push('/');
        next.clear();
        work += frontier.len();
        if work > WORK_MAX {
            r.capped = true;
            frontier.clear();
        }
        let param = match trie {
            Some(t) if !frontier.is_empty() => {
                is_param(cfg, t, depth, frontier, &mut scratch, &mut r.capped)
            }
            _ => false,
        };
        work += scratch.len();
        scratch.clear();
        if param {
            r.learnt = true;
            out.push('{');
            out.push_str(LEARNT_PARAM);
            out.push('}');
            if let Some(t) = trie {
                // Nodes in frontier order, children in key order: a canonical order.
                for &n in frontier.iter() {
                    next.extend(t.nodes[n as usize].children());
                    if next.len() >= FRONTIER_MAX {
                        r.capped |= next.len() > FRONTIER_MAX;
                        next.truncate(FRONTIER_MAX);
                        break;
                    }
                }
            }
        } else {
            let seg = &path[s.start..s.end];
            match s.shape {
                Some(sh) => {
                    out.push('{');
                    out.push_str(sh);
                    out.push('}');
                }
                None => push_literal(out, seg),
            }
            if let Some(t) = trie {
                for &n in frontier.iter() {
                    let node = &t.nodes[n as usize];
                    let c = match s.shape {
                        Some(sh) => node
                            .shapes
                            .binary_search_by(|c| c.0.cmp(sh))
                            .ok()
                            .map(|i| node.shapes[i].1),
                        None => node
                            .lits
                            .binary_search_by(|c| (*c.0).cmp(seg))
                            .ok()
                            .map(|i| node.lits[i].1),
                    };
                    next.extend(c);
                }
            }
        }
        std::mem::swap(frontier, next);
    }
    r
}

/// Braces would read as a placeholder: a literal keeps them percent-encoded.
fn push_literal(out: &mut String, seg: &str) {
    for c in seg.chars() {
        match c {
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
}

/// Whether the position below the `frontier` nodes is a parameter (the rules of the module
/// doc). `scratch` collects the union of literal children when the frontier has several nodes.
fn is_param<'t>(
    cfg: &TemplateConfig,
    t: &'t Trie,
    depth: usize,
    frontier: &[u32],
    scratch: &mut Vec<(&'t str, bool)>,
    capped: &mut bool,
) -> bool {
    let nodes = || frontier.iter().map(|&n| &t.nodes[n as usize]);
    if nodes().any(Node::collapsed) {
        return true;
    }
    if depth == 0 {
        // First segments are a site's sections and pages (`/api`, `/login`, `/robots.txt`);
        // only the hard cap makes them a parameter.
        return false;
    }
    let total: usize = nodes().map(|n| n.lits.len()).sum();
    let half = cfg.param_threshold / 2;
    if total <= half {
        return false;
    }
    let coll = |c: u32| t.nodes[c as usize].has_value_child();
    let (distinct, nonword, collections) = if frontier.len() == 1 {
        let lits = nodes().flat_map(|n| n.lits.iter());
        let (mut nw, mut co) = (0, 0);
        for (k, c) in lits {
            nw += usize::from(!is_wordlike(k));
            co += usize::from(coll(*c));
        }
        (total, nw, co)
    } else {
        scratch.clear();
        for n in nodes() {
            let room = SCAN_MAX - scratch.len();
            scratch.extend(n.lits.iter().take(room).map(|(k, c)| (&**k, coll(*c))));
            if scratch.len() == SCAN_MAX {
                *capped = true;
                break;
            }
        }
        scratch.sort_unstable();
        // Sorted by (key, flag): the last entry of a key run carries `true` if any has it.
        let (mut d, mut nw, mut co) = (0, 0, 0);
        for (i, (k, c)) in scratch.iter().enumerate() {
            if scratch.get(i + 1).is_some_and(|x| x.0 == *k) {
                continue;
            }
            d += 1;
            nw += usize::from(!is_wordlike(k));
            co += usize::from(*c);
        }
        (d, nw, co)
    };
    if nonword > half {
        return true;
    }
    distinct > cfg.param_threshold && collections * 2 < distinct
}

/// A plain word such as a resource name: letters, `-`, `_`, and digits only as a version
/// (`v2`) or a short suffix of at most one digit (`oauth2`, `s3`).
fn is_wordlike(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphabetic() {
        return false;
    }
    if is_version(s) {
        return true;
    }
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    let chars_ok = b
        .iter()
        .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
    chars_ok && (digits == 0 || (digits == 1 && b[b.len() - 1].is_ascii_digit()))
}

/// `v1`, `v10`, `v2beta1`, `v1alpha2`, `v1.2`: API versions stay literal.
fn is_version(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 2 || !(b[0] == b'v' || b[0] == b'V') {
        return false;
    }
    let rest = &s[1..];
    let num_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    if num_end == 0 || num_end > 4 {
        return false;
    }
    let tail = &rest[num_end..];
    if tail.is_empty() {
        return true;
    }
    if let Some(minor) = tail.strip_prefix('.') {
        return minor
            .split('.')
            .all(|p| !p.is_empty() && p.len() <= 4 && p.bytes().all(|c| c.is_ascii_digit()));
    }
    for pre in ["alpha", "beta", "rc"] {
        if let Some(n) = tail.strip_prefix(pre) {
            return n.len() <= 3 && n.bytes().all(|c| c.is_ascii_digit());
        }
    }
    false
}

/// The shape of one path segment, if it is a value by shape alone; the name is the parameter
/// name of the template (see the module doc for the list).
pub fn segment_shape(seg: &str) -> Option<&'static str> {
    let b = seg.as_bytes();
    if b.is_empty() {
        return None;
    }
    if b.len() <= MAX_LITERAL_BYTES && b.iter().all(u8::is_ascii_alphabetic) {
        // The common case, a word: every shape needs a digit or punctuation.
        return None;
    }
    if let Some(s) = core_shape(seg) {
        return Some(s);
    }
    if let Some(dot) = b.iter().rposition(|&c| c == b'.') {
        let (stem, ext) = (&seg[..dot], &seg[dot + 1..]);
        if !stem.is_empty()
            && (1..=5).contains(&ext.len())
            && ext.bytes().all(|c| c.is_ascii_alphanumeric())
            && ext.bytes().any(|c| c.is_ascii_alphabetic())
            && core_shape(stem).is_some()
        {
            return Some("file");
        }
    }
    if b.len() > MAX_LITERAL_BYTES {
        return Some("value");
    }
    None
}

/// Shapes other than `file` and `value`.
fn core_shape(seg: &str) -> Option<&'static str> {
    let b = seg.as_bytes();
    let (mut digits, mut upper, mut lower, mut hexletters, mut other) = (0, 0, 0, 0, 0);
    for &c in b {
        match c {
            b'0'..=b'9' => digits += 1,
            b'a'..=b'f' => {
                lower += 1;
                hexletters += 1
            }
            b'A'..=b'F' => {
                upper += 1;
                hexletters += 1
            }
            b'g'..=b'z' => lower += 1,
            b'G'..=b'Z' => upper += 1,
            _ => other += 1,
        }
    }
    let n = b.len();
    if digits == n {
        return Some("id");
    }
    if digits == 0 && other == 0 {
        // Letters only: a word (every shape below needs a digit or punctuation).
        return None;
    }
    if is_uuid(b) {
        return Some("uuid");
    }
    let alnum = digits + upper + lower == n;
    if alnum && n >= 16 && digits > 0 && hexletters == upper + lower && hexletters > 0 {
        // Hex in one case only: a digest, not a word.
        if upper == 0 || lower == 0 {
            return Some("hash");
        }
    }
    if is_date(b) {
        return Some("date");
    }
    if other > 0 && is_email(seg) {
        return Some("email");
    }
    if alnum && n == 26 && is_ulid(b) && digits > 0 {
        return Some("id");
    }
    if alnum && n == 27 && digits > 0 && upper + lower > 0 {
        return Some("id"); // KSUID: 27 base62 characters.
    }
    if is_token(b, digits, upper, lower) {
        return Some("token");
    }
    let code_chars = other == 0
        || b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
    if code_chars && is_code(b, digits) && !is_version(seg) {
        return Some("code");
    }
    None
}

fn is_hex(c: u8) -> bool {
    c.is_ascii_hexdigit()
}

/// RFC 9562 textual form (8-4-4-4-12 hex digits), any version.
fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => is_hex(c),
        })
}

/// `YYYY-MM-DD`, optionally followed by an RFC 3339 time (`T…`).
fn is_date(b: &[u8]) -> bool {
    if b.len() < 10 {
        return false;
    }
    let d = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if !(d(0..4) && b[4] == b'-' && d(5..7) && b[7] == b'-' && d(8..10)) {
        return false;
    }
    let month = (b[5] - b'0') * 10 + (b[6] - b'0');
    let day = (b[8] - b'0') * 10 + (b[9] - b'0');
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return false;
    }
    match b.get(10) {
        None => true,
        Some(b'T' | b't') => {
            b.len() <= 40
                && b[11..]
                    .iter()
                    .all(|c| c.is_ascii_digit() || b":.+-Zz".contains(c))
        }
        _ => false,
    }
}

/// `local@domain.tld`, with `@` possibly written `%40`.
fn is_email(s: &str) -> bool {
    let b = s.as_bytes();
    let at = b.iter().position(|&c| c == b'@');
    let pct = || (0..b.len().saturating_sub(2)).find(|&i| &b[i..i + 3] == b"%40");
    let (local, domain) = match (at, at.is_none().then(pct).flatten()) {
        (Some(i), _) => (&s[..i], &s[i + 1..]),
        (None, Some(i)) => (&s[..i], &s[i + 3..]),
        (None, None) => return false,
    };
    let lok = !local.is_empty()
        && local.len() <= 64
        && local
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".!#$%&'*+/=?^_`{|}~-".contains(&c));
    let labels_ok = domain.split('.').all(|l| {
        !l.is_empty() && l.len() <= 63 && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
    });
    let tld_ok = domain
        .rsplit('.')
        .next()
        .is_some_and(|t| t.len() >= 2 && t.bytes().all(|c| c.is_ascii_alphabetic()));
    lok && domain.contains('.') && domain.len() <= 253 && labels_ok && tld_ok
}

/// Crockford base32 (no I, L, O, U), first character 0–7 (a 128-bit ULID).
fn is_ulid(b: &[u8]) -> bool {
    matches!(b[0], b'0'..=b'7')
        && b.iter().all(|&c| {
            let c = c.to_ascii_uppercase();
            c.is_ascii_digit() || (c.is_ascii_uppercase() && !b"ILOU".contains(&c))
        })
}

/// A base64url (or base64) token of at least 20 characters mixing digits, upper and lower
/// case, with optional `=` padding; or a JWT (`eyJ….….…`).
fn is_token(b: &[u8], digits: usize, upper: usize, lower: usize) -> bool {
    if b.len() < 20 {
        return false;
    }
    if b.starts_with(b"eyJ") && b.iter().filter(|&&c| c == b'.').count() == 2 {
        return b
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"-_.=".contains(&c));
    }
    let body = b.strip_suffix(b"==").or(b.strip_suffix(b"=")).unwrap_or(b);
    digits > 0
        && upper > 0
        && lower > 0
        && body
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"-_+~".contains(&c))
}

/// A mixed letter/digit code of letters, digits, `-` and `_`, at least 6 long, with a letter
/// and either 4 digits, a run of 3 digits after a separator (`ABC-123`, `image_123`), or
/// digits alternating with letters (`ORD7X2`, `a1b2c3`) — but not a word with a short number
/// (`sha256`, `base64`, `covid19`).
fn is_code(b: &[u8], digits: usize) -> bool {
    if b.len() < 6 || digits < 2 || !b.iter().any(u8::is_ascii_alphabetic) {
        return false;
    }
    let (mut switches, mut run, mut max_run) = (0, 0, 0);
    let mut prev: Option<bool> = None;
    for &c in b {
        if !c.is_ascii_alphanumeric() {
            continue;
        }
        let d = c.is_ascii_digit();
        if prev.is_some_and(|p| p != d) {
            switches += 1;
        }
        run = if d { run + 1 } else { 0 };
        max_run = max_run.max(run);
        prev = Some(d);
    }
    let separated = b.iter().any(|&c| c == b'-' || c == b'_');
    digits >= 4 || switches >= 3 || (separated && max_run >= 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(threshold: usize, max_literals: usize) -> TemplateConfig {
        TemplateConfig {
            param_threshold: threshold,
            max_literals,
            ..TemplateConfig::default()
        }
    }

    /// Deterministic xorshift64* for shuffles.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn shuffle<T>(&mut self, v: &mut [T]) {
            for i in (1..v.len()).rev() {
                let j = (self.next() % (i as u64 + 1)) as usize;
                v.swap(i, j);
            }
        }
    }

    #[test]
    fn shapes_true() {
        let cases = [
            ("48213", "id"),
            ("0", "id"),
            ("20240301", "id"),
            ("123e4567-e89b-12d3-a456-426614174000", "uuid"),
            ("123E4567-E89B-12D3-A456-426614174000", "uuid"),
            ("d41d8cd98f00b204e9800998ecf8427e", "hash"),
            ("da39a3ee5e6b4b0d3255bfef95601890afd80709", "hash"),
            (
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "hash",
            ),
            ("0123456789abcdef", "hash"),
            ("01ARZ3NDEKTSV4RRFFQ69G5FAV", "id"),
            ("0ujtsYcgvSTl8PAuAdqWYSMnLOv", "id"),
            ("dGhpcyBpcyBhIHRva2VuMTIz", "token"),
            ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc_DEF-123", "token"),
            ("2024-03-01", "date"),
            ("2024-03-01T10:00:00Z", "date"),
            ("john.doe@example.com", "email"),
            ("john.doe%40example.com", "email"),
            ("ABC-12345", "code"),
            ("SKU-99812-XL", "code"),
            ("a1b2c3d4e5", "code"),
            ("ORD7X2", "code"),
            ("48213.pdf", "file"),
            ("image_123.png", "file"),
        ];
        for (seg, want) in cases {
            assert_eq!(segment_shape(seg), Some(want), "{seg}");
        }
        assert_eq!(segment_shape(&"x".repeat(200)), Some("value"));
        // Mixed-case hex is not a digest (but a token).
        assert_eq!(
            segment_shape("0123456789abcdeF0123456789ABCDEF"),
            Some("token")
        );
    }

    #[test]
    fn shapes_false() {
        for seg in [
            "me",
            "orders",
            "export",
            "self",
            "latest",
            "v1",
            "v2",
            "v10",
            "v2beta1",
            "v1.2",
            "api",
            "users",
            "report.pdf",
            "index.html",
            "sha256",
            "base64",
            "oauth2",
            "covid19",
            "deadbeefcafebabe", // hex letters, no digit: could be a word
            "how-to-configure-nginx-proxy", // slug, one class
            "getUserProfileSettings", // camelCase, no digit
            "2024-13-01",       // no month 13
            "user@localhost",   // no dot in domain
            "a1",
            "ABC-1",
            "",
        ] {
            assert_eq!(segment_shape(seg), None, "{seg:?}");
        }
    }

    #[test]
    fn shaped_paths() {
        let mut t = Templater::new(TemplateConfig::default());
        assert_eq!(
            t.observe("h", "/api/v1/users/48213/orders"),
            "/api/v1/users/{id}/orders"
        );
        assert_eq!(
            t.observe("h", "/files/da39a3ee5e6b4b0d3255bfef95601890afd80709"),
            "/files/{hash}"
        );
        assert_eq!(t.observe("h", "/products/SKU-99812-XL"), "/products/{code}");
        assert_eq!(t.observe("h", "/users/me"), "/users/me");
        assert_eq!(t.observe("h", "/"), "/");
        assert_eq!(t.observe("h", ""), "/");
    }

    #[test]
    fn normalisation() {
        let t = Templater::new(TemplateConfig::default());
        assert_eq!(t.resolve("h", "/a//b/"), "/a/b");
        assert_eq!(t.resolve("h", "/a/./b/../c"), "/a/c");
        assert_eq!(t.resolve("h", "/../../a"), "/a");
        assert_eq!(t.resolve("h", "/a/b?x=1#f"), "/a/b");
        assert_eq!(t.resolve("h", "/login;jsessionid=ABC123"), "/login");
        assert_eq!(t.resolve("h", "/a/{x}"), "/a/%7Bx%7D");
        assert_eq!(t.resolve("h", "http://example.com/a/7?q"), "/a/{id}");
        assert_eq!(t.resolve("h", "HTTPS://example.com"), "/");
        assert_ne!(t.resolve("h", "/a/b"), t.resolve("h", "/a/b/c"));
    }

    #[test]
    fn usernames_become_a_parameter() {
        let mut t = Templater::new(TemplateConfig::default());
        let names = [
            "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
            "mallory", "niaj", "olivia", "peggy",
        ];
        for n in names {
            t.observe("h", &format!("/users/{n}/repos"));
        }
        assert_eq!(t.resolve("h", "/users/alice/repos"), "/users/{param}/repos");
        assert_eq!(t.resolve("h", "/users/zed/repos"), "/users/{param}/repos");
        // A value with a shape at a parameter position is the same parameter.
        assert_eq!(t.resolve("h", "/users/42/repos"), "/users/{param}/repos");
        assert!(t.stats().learned_params > 0);
        // Fewer than the threshold: still literal.
        let mut t = Templater::new(TemplateConfig::default());
        for n in &names[..5] {
            t.observe("h", &format!("/users/{n}/repos"));
        }
        assert_eq!(t.resolve("h", "/users/alice/repos"), "/users/alice/repos");
    }

    #[test]
    fn non_word_values_need_fewer() {
        let mut t = Templater::new(TemplateConfig::default());
        for i in 0..7 {
            t.observe("h", &format!("/assets/app{i}{i}.js"));
        }
        assert_eq!(t.resolve("h", "/assets/app11.js"), "/assets/{param}");
        let mut t = Templater::new(TemplateConfig::default());
        for i in 0..6 {
            t.observe("h", &format!("/assets/app{i}{i}.js"));
        }
        assert_eq!(t.resolve("h", "/assets/app11.js"), "/assets/app11.js");
    }

    #[test]
    fn resource_catalogue_stays_literal() {
        let mut t = Templater::new(TemplateConfig::default());
        let resources = [
            "users",
            "orders",
            "products",
            "invoices",
            "payments",
            "carts",
            "reviews",
            "shipments",
            "coupons",
            "categories",
            "stores",
            "warehouses",
            "suppliers",
            "refunds",
            "subscriptions",
            "webhooks",
            "health",
            "status",
            "search",
            "login",
        ];
        for (i, r) in resources.iter().enumerate() {
            t.observe("h", &format!("/api/v1/{r}"));
            if i < 14 {
                t.observe("h", &format!("/api/v1/{r}/{}", 100 + i));
            }
        }
        for r in resources {
            assert_eq!(
                t.resolve("h", &format!("/api/v1/{r}")),
                format!("/api/v1/{r}")
            );
        }
        assert_eq!(t.resolve("h", "/api/v1/users/7"), "/api/v1/users/{id}");
        // The same catalogue without ids below it is merged (documented failure mode).
        let mut t = Templater::new(TemplateConfig::default());
        for r in resources {
            t.observe("h", &format!("/api/v1/{r}"));
        }
        assert_eq!(t.resolve("h", "/api/v1/users"), "/api/v1/{param}");
    }

    #[test]
    fn ten_resources_never_merge() {
        let mut t = Templater::new(TemplateConfig::default());
        let rs = [
            "users", "orders", "products", "files", "search", "auth", "health", "me", "export",
            "settings",
        ];
        for r in rs {
            t.observe("h", &format!("/api/v1/{r}"));
        }
        for r in rs {
            assert_eq!(
                t.resolve("h", &format!("/api/v1/{r}")),
                format!("/api/v1/{r}")
            );
        }
    }

    /// A mixed corpus exercising shapes, lazy parameters, collapses and nesting.
    fn corpus() -> Vec<String> {
        let mut v = Vec::new();
        for u in 0..9 {
            v.push(format!("/users/user{u}x/repos"));
            v.push(format!("/users/user{u}x/repos/proj{}", u % 4));
            v.push(format!("/users/user{u}x/starred"));
        }
        for r in ["a", "b", "c", "d"] {
            v.push(format!("/api/{r}"));
            v.push(format!("/api/{r}/17"));
        }
        for i in 0..14 {
            v.push(format!("/tags/t{i}"));
        }
        v.push("/tags/42".into());
        v.push("/x/y/z".into());
        v.push("/x/y".into());
        v
    }

    fn learn_all(cfg: TemplateConfig, paths: &[String]) -> Templater {
        let mut t = Templater::new(cfg);
        for p in paths {
            t.observe("h", p);
        }
        t
    }

    #[test]
    fn order_independent() {
        let paths = corpus();
        for c in [cfg(3, 6), cfg(4, 5), cfg(12, 128)] {
            let base = learn_all(c.clone(), &paths);
            let want: Vec<String> = paths.iter().map(|p| base.resolve("h", p)).collect();
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
            for _ in 0..20 {
                let mut p = paths.clone();
                rng.shuffle(&mut p);
                let t = learn_all(c.clone(), &p);
                let got: Vec<String> = paths.iter().map(|p| t.resolve("h", p)).collect();
                assert_eq!(got, want, "cfg {c:?}");
                assert_eq!(t.stats().nodes, base.stats().nodes);
            }
        }
        // The small configuration really learnt parameters and collapsed positions.
        let t = learn_all(cfg(3, 6), &paths);
        assert!(t.stats().collapsed > 0);
        assert_eq!(t.resolve("h", "/tags/t1"), "/tags/{param}");
    }

    #[test]
    fn capped_frontiers_are_order_independent() {
        // 12 × 12 value nodes below two learnt parameters: more than FRONTIER_MAX.
        let leaves = ["p", "q", "r", "s", "t", "u"];
        let mut paths = Vec::new();
        for i in 0..12 {
            for j in 0..12 {
                paths.push(format!("/x/a{i}x/b{j}x/{}", leaves[(i * 7 + j) % 6]));
            }
        }
        let c = cfg(4, 20);
        let base = learn_all(c.clone(), &paths);
        assert!(base.stats().frontier_capped > 0);
        let want: Vec<String> = paths.iter().map(|p| base.resolve("h", p)).collect();
        assert!(want.iter().all(|t| t.starts_with("/x/{param}/{param}/")));
        let mut rng = Rng(7);
        for _ in 0..20 {
            let mut p = paths.clone();
            rng.shuffle(&mut p);
            let t = learn_all(c.clone(), &p);
            let got: Vec<String> = paths.iter().map(|p| t.resolve("h", p)).collect();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn merge_equals_learning_all() {
        let paths = corpus();
        for c in [cfg(3, 6), cfg(12, 128)] {
            let all = learn_all(c.clone(), &paths);
            let mut rng = Rng(42);
            for _ in 0..10 {
                let mut p = paths.clone();
                rng.shuffle(&mut p);
                let cut = (rng.next() % p.len() as u64) as usize;
                let mut a = learn_all(c.clone(), &p[..cut]);
                let b = learn_all(c.clone(), &p[cut..]);
                a.merge(&b);
                for q in &paths {
                    assert_eq!(a.resolve("h", q), all.resolve("h", q), "{q}");
                }
                assert_eq!(a.stats().nodes, all.stats().nodes);
            }
        }
    }

    /// Random corpora over small pools, so that positions hit every rule: words, non-words,
    /// shapes, nesting below learnt parameters, collapses and unions of collapsed subtrees.
    fn random_corpus(rng: &mut Rng, n: usize) -> Vec<String> {
        const WORDS: [&str; 9] = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        (0..n)
            .map(|_| {
                let depth = 1 + rng.next() % 5;
                let mut p = String::new();
                for _ in 0..depth {
                    let r = rng.next();
                    match r % 4 {
                        0 => p.push_str(&format!("/{}", WORDS[(r >> 8) as usize % 9])),
                        1 => p.push_str(&format!("/x{}y", (r >> 8) % 9)),
                        2 => p.push_str(&format!("/{}", (r >> 8) % 50)),
                        _ => p.push_str(&format!("/{}", WORDS[(r >> 8) as usize % 3])),
                    }
                }
                p
            })
            .collect()
    }

    #[test]
    fn random_corpora_order_and_merge() {
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        let mut learnt = 0;
        for round in 0..12 {
            let paths = random_corpus(&mut rng, 60 + round * 20);
            let c = [cfg(2, 4), cfg(3, 6), cfg(4, 5)][round % 3].clone();
            let base = learn_all(c.clone(), &paths);
            let want: Vec<String> = paths.iter().map(|p| base.resolve("h", p)).collect();
            learnt += want.iter().filter(|t| t.contains("{param}")).count();
            for (p, t) in paths.iter().zip(&want) {
                // Same depth; literals kept verbatim.
                let ps: Vec<&str> = p.split('/').collect();
                let ts: Vec<&str> = t.split('/').collect();
                assert_eq!(ps.len(), ts.len(), "{p} {t}");
                for (a, b) in ps.iter().zip(&ts) {
                    assert!(a == b || b.starts_with('{'), "{p} {t}");
                }
            }
            for _ in 0..20 {
                let mut p = paths.clone();
                rng.shuffle(&mut p);
                let t = learn_all(c.clone(), &p);
                let got: Vec<String> = paths.iter().map(|p| t.resolve("h", p)).collect();
                assert_eq!(got, want, "round {round}");
                // Merge of three parts, in a shuffled order of parts.
                let a = (rng.next() % p.len() as u64) as usize;
                let b = a + (rng.next() % (p.len() - a) as u64) as usize;
                let mut parts = vec![
                    learn_all(c.clone(), &p[..a]),
                    learn_all(c.clone(), &p[a..b]),
                    learn_all(c.clone(), &p[b..]),
                ];
                rng.shuffle(&mut parts);
                let mut m = parts.remove(0);
                for o in &parts {
                    m.merge(o);
                }
                let got: Vec<String> = paths.iter().map(|p| m.resolve("h", p)).collect();
                assert_eq!(got, want, "merge, round {round}");
                assert_eq!(m.stats().nodes, base.stats().nodes);
            }
        }
        assert!(
            learnt > 50,
            "the corpora learnt too few parameters: {learnt}"
        );
    }

    #[test]
    fn first_segment_is_a_section() {
        let mut t = Templater::new(TemplateConfig::default());
        let pages = [
            "about", "contact", "pricing", "blog", "login", "signup", "docs", "careers", "terms",
            "privacy", "faq", "support", "help", "status",
        ];
        let files = [
            "favicon.ico",
            "robots.txt",
            "sitemap.xml",
            "manifest.json",
            "sw.js",
            "index.html",
            "humans.txt",
        ];
        for p in pages.iter().chain(&files) {
            t.observe("h", &format!("/{p}"));
        }
        for p in pages.iter().chain(&files) {
            assert_eq!(t.resolve("h", &format!("/{p}")), format!("/{p}"));
        }
        // The hard cap still applies.
        let mut t = Templater::new(cfg(3, 6));
        for i in 0..7 {
            t.observe("h", &format!("/u{i}x"));
        }
        assert_eq!(t.resolve("h", "/u1x"), "/{param}");
    }

    #[test]
    fn no_over_merge() {
        let mut t = Templater::new(cfg(3, 6));
        for p in ["/a/b", "/a/b/c", "/a/c", "/a/d", "/a/b/d"] {
            t.observe("h", p);
        }
        // Three literals under /a: at the threshold, not above it.
        assert_eq!(t.resolve("h", "/a/b"), "/a/b");
        assert_eq!(t.resolve("h", "/a/c"), "/a/c");
        assert_eq!(t.resolve("h", "/a/b/c"), "/a/b/c");
        assert_ne!(t.resolve("h", "/a/b/c"), t.resolve("h", "/a/b"));
        // Depth is never merged, even at a parameter position.
        for x in ["e", "f", "g"] {
            t.observe("h", &format!("/a/{x}"));
        }
        assert_eq!(t.resolve("h", "/a/b"), "/a/{param}");
        assert_eq!(t.resolve("h", "/a/b/c"), "/a/{param}/c");
        assert_eq!(t.resolve("h", "/a/b/c/d"), "/a/{param}/c/d");
        // Hosts are separate.
        assert_eq!(t.resolve("other", "/a/b"), "/a/b");
    }

    #[test]
    fn memory_caps_are_counted() {
        let mut t = Templater::new(TemplateConfig {
            max_hosts: 2,
            max_nodes_per_host: 10,
            ..TemplateConfig::default()
        });
        for i in 0..50 {
            t.observe("h", &format!("/r{i}/s"));
        }
        let s = t.stats();
        assert!(s.nodes <= 20, "{s:?}");
        assert!(s.nodes_dropped > 0);
        t.observe("h2", "/a");
        assert_eq!(t.observe("h3", "/a/7"), "/a/{id}");
        let s = t.stats();
        assert_eq!(s.hosts, 2);
        assert_eq!(s.hosts_dropped, 1);
        // Total budget.
        let mut t = Templater::new(TemplateConfig {
            max_nodes_total: 30,
            ..TemplateConfig::default()
        });
        for i in 0..100 {
            t.observe(&format!("h{}", i % 7), &format!("/q{i}x/w"));
        }
        assert!(t.stats().nodes <= 30);
        assert!(t.stats().nodes_dropped + t.stats().hosts_dropped > 0);
        // Literals per node: collapsed, nodes freed.
        let mut t = Templater::new(cfg(12, 20));
        for i in 0..1000 {
            t.observe("h", &format!("/k/w{i}"));
        }
        assert_eq!(t.stats().collapsed, 1);
        assert!(t.stats().nodes <= 4, "{:?}", t.stats());
        assert_eq!(t.resolve("h", "/k/anything"), "/k/{param}");
    }

    #[test]
    fn deep_paths_keep_their_depth() {
        let mut t = Templater::new(TemplateConfig {
            max_segments: 3,
            ..TemplateConfig::default()
        });
        let got = t.observe("h", "/a/b/c/d/7/e");
        assert_eq!(got, "/a/b/c/d/{id}/e");
        assert_eq!(t.stats().deep_paths, 1);
        assert_eq!(t.stats().nodes, 4);
    }

    #[test]
    fn stats_add() {
        let mut a = TemplateStats {
            nodes_dropped: 2,
            ..Default::default()
        };
        a.add(&TemplateStats {
            nodes_dropped: 3,
            hosts: 1,
            ..Default::default()
        });
        assert_eq!((a.nodes_dropped, a.hosts), (5, 1));
    }

    #[test]
    fn target_starting_inside_a_character_is_templated() {
        // Found by the `inspect` fuzz target: byte 7 (the length of `http://`) fell inside a
        // character and slicing there panicked.
        let mut t = Templater::new(TemplateConfig::default());
        assert_eq!(t.observe("h", "/aéééé/x"), "/aéééé/x");
        assert_eq!(t.resolve("h", "ééééé"), "/ééééé");
        assert_eq!(t.resolve("h", "éééé"), "/éééé");
        // An absolute-form target, in any case, still loses its authority.
        assert_eq!(t.resolve("h", "HTTP://Höst/é"), "/é");
        assert_eq!(t.resolve("h", "https://é"), "/");
    }
}
