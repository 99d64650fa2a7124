//! The bidirectional flow table: TCP segments in, per-connection ordered stream events out.
//!
//! Owns connection tracking (RFC 9293 §3.3.2 states as far as a passive observer can know
//! them): which side is the client, when a connection starts and ends, and the two
//! [`HalfStream`]s of each connection. The application layer plugs in through [`FlowHandler`]
//! and keeps its per-connection state inside the table's entry, so one lookup per packet
//! serves reassembly and parsing alike.
//!
//! Who is the client: the sender of a SYN without ACK; else the receiver of a SYN-ACK; else
//! (midstream) the side whose first payload the handler recognises as a request (or the other
//! side of one it recognises as a response); else the side with the higher port.
//!
//! Tunnels: the key is the inner 5-tuple plus the tunnel scope of the segment
//! ([`crate::tunnel::Tunnel::scope`]: VXLAN/Geneve VNIs, ERSPAN sessions), so two VPCs mirrored
//! into one sensor with the same private addresses stay apart. When both ends of a connection
//! are mirrored through different sessions, the same connection arrives under two scopes and
//! is tracked twice; [`FlowConfig::key_by_tunnel`] off merges them (and would merge the VPCs).
//!
//! Resources: at most [`FlowConfig::max_flows`] connections. When full, the oldest idle one is
//! evicted (second-chance queue, O(1) amortised) and counted; connections idle longer than
//! [`FlowConfig::idle_timeout_us`] of capture time are closed by a periodic sweep.
use crate::decode::TcpSegment;
use crate::reassembly::{HalfStream, HeldBudget, ReassemblyConfig, ReassemblyStats, StreamEvent};
use crate::tunnel::Tunnel;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// Direction of bytes within a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client → server.
    ToServer,
    /// Server → client.
    ToClient,
}

/// Normalised 5-tuple (TCP implied): the lower (address, port) first, so both directions of a
/// connection hash alike. The VLAN id and the tunnel scope keep overlapping address spaces
/// apart.
///
/// Stored twice per tracked connection (in the index and in the entry), so it is packed: both
/// addresses as 16 bytes (IPv4 as IPv4-mapped, told apart by a flag, since both ends of a
/// connection share the family), 48 bytes against 80 for a pair of `SocketAddr`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowKey {
    lo_ip: [u8; 16],
    hi_ip: [u8; 16],
    lo_port: u16,
    hi_port: u16,
    vlan: u16,
    /// [`KEY_V4`], [`KEY_VLAN`].
    flags: u8,
    scope: u64,
}

/// One write of the packed key instead of the derived one write per field: the flow table
/// hashes a key for every packet, and SipHash's per-write overhead was most of that cost.
impl std::hash::Hash for FlowKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        let mut b = [0u8; 48];
        b[..16].copy_from_slice(&self.lo_ip);
        b[16..32].copy_from_slice(&self.hi_ip);
        b[32..34].copy_from_slice(&self.lo_port.to_le_bytes());
        b[34..36].copy_from_slice(&self.hi_port.to_le_bytes());
        b[36..38].copy_from_slice(&self.vlan.to_le_bytes());
        b[38] = self.flags;
        b[40..].copy_from_slice(&self.scope.to_le_bytes());
        h.write(&b);
    }
}

const KEY_V4: u8 = 1;
const KEY_VLAN: u8 = 2;

fn ip_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
        IpAddr::V6(v) => v.octets(),
    }
}

impl FlowKey {
    /// The key of the connection `seg` belongs to (tunnel scope included), and whether `seg`
    /// travels lo → hi.
    pub fn of(seg: &TcpSegment<'_>) -> (FlowKey, bool) {
        FlowKey::of_scoped(seg, true)
    }

    /// As [`FlowKey::of`], with the tunnel scope in the key only if `by_tunnel`.
    pub fn of_scoped(seg: &TcpSegment<'_>, by_tunnel: bool) -> (FlowKey, bool) {
        let scope = match seg.tunnel {
            Some(t) if by_tunnel => t.scope,
            _ => 0,
        };
        // Both ends of a segment share the address family, so the packed bytes order the ends
        // as the addresses do, without comparing `IpAddr` enums.
        let (src, dst) = (ip_bytes(seg.src), ip_bytes(seg.dst));
        let from_lo = (src, seg.sport) <= (dst, seg.dport);
        let (lo, hi) = if from_lo {
            ((src, seg.sport), (dst, seg.dport))
        } else {
            ((dst, seg.dport), (src, seg.sport))
        };
        let mut flags = 0;
        if seg.src.is_ipv4() {
            flags |= KEY_V4;
        }
        if seg.vlan.is_some() {
            flags |= KEY_VLAN;
        }
        (
            FlowKey {
                lo_ip: lo.0,
                hi_ip: hi.0,
                lo_port: lo.1,
                hi_port: hi.1,
                vlan: seg.vlan.unwrap_or(0),
                flags,
                scope,
            },
            from_lo,
        )
    }

    fn ip(&self, bytes: [u8; 16]) -> IpAddr {
        let v6 = Ipv6Addr::from(bytes);
        match v6.to_ipv4_mapped() {
            Some(v4) if self.flags & KEY_V4 != 0 => IpAddr::V4(v4),
            _ => IpAddr::V6(v6),
        }
    }

    /// The lower endpoint.
    fn lo(&self) -> SocketAddr {
        SocketAddr::new(self.ip(self.lo_ip), self.lo_port)
    }

    /// The higher endpoint.
    fn hi(&self) -> SocketAddr {
        SocketAddr::new(self.ip(self.hi_ip), self.hi_port)
    }

    /// The VLAN id, if tagged.
    fn vlan(&self) -> Option<u16> {
        (self.flags & KEY_VLAN != 0).then_some(self.vlan)
    }

    /// A hash that is the same for both directions and independent of the process's hasher
    /// seed, for spreading flows over workers.
    pub fn symmetric_hash(&self) -> u64 {
        fn mix(mut h: u64, x: u64) -> u64 {
            h ^= x;
            h = h.wrapping_mul(0x100000001b3);
            h ^ (h >> 29)
        }
        let mut h = 0xcbf29ce484222325u64;
        if self.scope != 0 {
            h = mix(h, self.scope);
        }
        for (ip, port) in [(self.lo_ip, self.lo_port), (self.hi_ip, self.hi_port)] {
            h = mix(h, u64::from(port));
            let x = u128::from_be_bytes(ip);
            if self.flags & KEY_V4 != 0 {
                h = mix(h, x as u32 as u64);
            } else {
                h = mix(h, x as u64);
                h = mix(h, (x >> 64) as u64);
            }
        }
        h
    }
}

/// What the application layer learns about a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowInfo {
    /// Sequential id, unique within one flow table.
    pub id: u64,
    /// The client's address.
    pub client: SocketAddr,
    /// The server's address.
    pub server: SocketAddr,
    /// VLAN id, if tagged.
    pub vlan: Option<u16>,
    /// The outermost tunnel of the connection's first packet (VNI, session, outer
    /// addresses), if it came through one.
    pub tunnel: Option<Tunnel>,
    /// Capture time of the first packet (µs).
    pub first_ts_us: i64,
    /// Whether the handshake (a SYN) was seen.
    pub handshake_seen: bool,
}

/// Per-chunk metadata handed to the handler with data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkInfo {
    /// Capture time of the segment that carried the bytes (µs).
    pub ts_us: i64,
    /// Stream offset of the first byte.
    pub offset: u64,
    /// The segment's acknowledgement as an offset into the peer's stream (see the parsers'
    /// `ChunkMeta::peer_ack`).
    pub peer_ack: Option<u64>,
}

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// Both FINs seen and delivered.
    Fin,
    /// A RST.
    Rst,
    /// Idle longer than the timeout.
    Idle,
    /// Evicted to make room (the table was full).
    Evicted,
    /// A new SYN reused the 5-tuple.
    Reused,
    /// End of input.
    Shutdown,
}

/// The application layer's view of connections.
pub trait FlowHandler {
    /// Per-connection state (e.g. an HTTP session).
    type State;
    /// A connection was created.
    fn open(&mut self, flow: &FlowInfo) -> Self::State;
    /// Classifies the first payload of a midstream connection: `Some(true)` if it is what a
    /// client sends (a request), `Some(false)` if a server's (a response), `None` if unsure.
    fn classify(&self, payload: &[u8]) -> Option<bool>;
    /// In-order stream bytes.
    fn data(
        &mut self,
        st: &mut Self::State,
        flow: &FlowInfo,
        dir: Direction,
        data: &[u8],
        info: ChunkInfo,
    );
    /// `len` bytes of `dir` were lost.
    fn gap(&mut self, st: &mut Self::State, flow: &FlowInfo, dir: Direction, len: u64);
    /// The connection ended; everything held has been delivered.
    fn close(&mut self, st: Self::State, flow: &FlowInfo, reason: CloseReason);
}

/// Flow table limits.
///
/// The caps are for the whole process: with one table per worker, each table gets its share
/// ([`FlowConfig::split`]).
///
/// ```toml
/// [flows]
/// max_flows = 262144          # concurrent connections tracked
/// idle_timeout_secs = 120     # capture-time idleness before a connection is closed
/// key_by_tunnel = true        # VNI / ERSPAN session in the connection key
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowConfig {
    /// Concurrent connections tracked; beyond, the oldest idle is evicted.
    pub max_flows: usize,
    /// Idle time (capture clock, µs) after which a connection is closed.
    pub idle_timeout_us: i64,
    /// Out-of-order store limits.
    pub reassembly: ReassemblyConfig,
    /// Whether the tunnel scope (VXLAN/Geneve VNI, ERSPAN session) is part of the connection
    /// key: on (the default), overlapping address spaces mirrored through different sessions
    /// stay apart; off, one connection mirrored through two sessions is tracked once.
    pub key_by_tunnel: bool,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            max_flows: 256 * 1024,
            idle_timeout_us: 120_000_000,
            reassembly: ReassemblyConfig::default(),
            key_by_tunnel: true,
        }
    }
}

impl FlowConfig {
    /// The limits of one of `tables` tables sharing these process-wide ones: each gets
    /// `ceil(cap / tables)` connections and held out-of-order bytes, so the tables together
    /// never hold more than the caps (plus rounding) however many workers run. Per-flow limits
    /// stay as they are.
    pub fn split(self, tables: usize) -> FlowConfig {
        let n = tables.max(1);
        let mut c = self;
        c.max_flows = self.max_flows.div_ceil(n).max(1);
        c.reassembly.max_held_bytes_total = self.reassembly.max_held_bytes_total.div_ceil(n);
        c
    }
}

/// Flow-table counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FlowStats {
    /// Connections created.
    pub flows_created: u64,
    /// Connections closed, by reason.
    pub closed_fin: u64,
    /// Closed by RST.
    pub closed_rst: u64,
    /// Closed idle.
    pub closed_idle: u64,
    /// Evicted because the table was full.
    pub evicted: u64,
    /// Closed because a new SYN reused the tuple.
    pub closed_reused: u64,
    /// Closed at the end of input.
    pub closed_shutdown: u64,
    /// Connections whose handshake was seen.
    pub with_handshake: u64,
    /// Connections picked up midstream.
    pub midstream: u64,
    /// Packets without payload or SYN for an unknown connection (ignored, no flow created).
    pub untracked_packets: u64,
    /// RSTs ignored because their sequence number lay outside the receiver's window (RFC 5961
    /// §3.2: blind injection, or a stale RST); the connection went on.
    pub rst_out_of_window: u64,
    /// Most connections tracked at once.
    pub peak_flows: u64,
    /// Reassembly counters.
    pub reassembly: ReassemblyStats,
    /// Peak bytes held out of order across all flows.
    pub peak_held_bytes: u64,
}

impl FlowStats {
    /// Adds another table's counters (one table per worker); peaks add up too, as the
    /// tables hold their flows at the same time.
    pub fn add(&mut self, o: &FlowStats) {
        self.flows_created += o.flows_created;
        self.closed_fin += o.closed_fin;
        self.closed_rst += o.closed_rst;
        self.closed_idle += o.closed_idle;
        self.evicted += o.evicted;
        self.closed_reused += o.closed_reused;
        self.closed_shutdown += o.closed_shutdown;
        self.with_handshake += o.with_handshake;
        self.midstream += o.midstream;
        self.untracked_packets += o.untracked_packets;
        self.rst_out_of_window += o.rst_out_of_window;
        self.peak_flows += o.peak_flows;
        self.peak_held_bytes += o.peak_held_bytes;
        self.reassembly.add(&o.reassembly);
    }
}

/// One tracked connection. Everything the handler is told about it ([`FlowInfo`]) is
/// rebuilt from these fields on demand rather than stored a second time: at a million
/// connections every byte here is a megabyte.
struct Entry<S> {
    key: FlowKey,
    id: u64,
    first_ts_us: i64,
    last_ts_us: i64,
    /// Out of line: most connections come through no tunnel.
    tunnel: Option<Box<Tunnel>>,
    /// Client's and server's half streams.
    to_server: HalfStream,
    to_client: HalfStream,
    /// Whether the key's `lo` side is the client.
    lo_is_client: bool,
    handshake_seen: bool,
    touched: bool,
    rst: bool,
    state: Option<S>,
}

impl<S> Entry<S> {
    fn info(&self) -> FlowInfo {
        let (lo, hi) = (self.key.lo(), self.key.hi());
        let (client, server) = if self.lo_is_client {
            (lo, hi)
        } else {
            (hi, lo)
        };
        FlowInfo {
            id: self.id,
            client,
            server,
            vlan: self.key.vlan(),
            tunnel: self.tunnel.as_deref().copied(),
            first_ts_us: self.first_ts_us,
            handshake_seen: self.handshake_seen,
        }
    }
}

/// The flow table.
///
/// Connections live in a slab indexed by a `u32`; the hash index maps keys to slots and the
/// eviction queue holds slot numbers, so neither repeats the entry. The slab and the queue
/// grow to the peak number of connections and stay there, bounded by the cap.
pub struct FlowTable<H: FlowHandler> {
    cfg: FlowConfig,
    map: HashMap<FlowKey, u32>,
    slots: Vec<Option<Entry<H::State>>>,
    /// Slots of closed connections, reused first.
    free: Vec<u32>,
    /// Second-chance queue: (slot, low half of the flow id). An element whose id no longer
    /// matches its slot belongs to a closed connection and is skipped.
    order: VecDeque<(u32, u32)>,
    next_id: u64,
    budget: HeldBudget,
    last_sweep_us: i64,
    now_us: i64,
    stats: FlowStats,
    /// The application layer.
    pub handler: H,
}

impl<H: FlowHandler> FlowTable<H> {
    /// An empty table.
    pub fn new(cfg: FlowConfig, handler: H) -> Self {
        let cfg = FlowConfig {
            // Slots are numbered by u32.
            max_flows: cfg.max_flows.clamp(1, u32::MAX as usize),
            ..cfg
        };
        FlowTable {
            cfg,
            map: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            order: VecDeque::new(),
            next_id: 0,
            budget: HeldBudget::default(),
            last_sweep_us: i64::MIN,
            now_us: i64::MIN,
            stats: FlowStats::default(),
            handler,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> FlowStats {
        let mut s = self.stats.clone();
        s.peak_held_bytes = self.budget.peak as u64;
        s
    }

    /// Connections currently tracked.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no connection is tracked.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn entry_mut(&mut self, slot: u32) -> Option<&mut Entry<H::State>> {
        self.slots.get_mut(slot as usize).and_then(Option::as_mut)
    }

    /// Processes one decoded TCP segment captured at `ts_us`.
    pub fn process(&mut self, seg: &TcpSegment<'_>, ts_us: i64) {
        self.now_us = self.now_us.max(ts_us);
        self.maybe_sweep();
        let (key, from_lo) = FlowKey::of_scoped(seg, self.cfg.key_by_tunnel);
        let mut slot = self.map.get(&key).copied();
        let is_syn = seg.flags.syn && !seg.flags.ack;
        if let (true, Some(i)) = (is_syn, slot) {
            if let Some(e) = self.entry_mut(i) {
                // A fresh SYN (not a retransmission of the one that opened this entry) on a
                // tuple that carried data or ended starts a new connection.
                // A SYN with another initial sequence number is a new attempt (port reuse, or a
                // client retrying before the handshake completes): start over, or the old ISN
                // would make the real connection's data look like it lies before the stream.
                let same_isn = e.to_server.offset_of(seg.seq.wrapping_add(1)) == Some(0);
                let from_client = from_lo == e.lo_is_client;
                if !same_isn || !from_client {
                    self.close_slot(i, CloseReason::Reused);
                    slot = None;
                }
            }
        }
        let created = slot.is_none();
        let slot = match slot {
            Some(i) => i,
            None => {
                if seg.payload.is_empty() && !seg.flags.syn {
                    // A bare ACK/FIN/RST of a connection we do not track: nothing to learn, and
                    // creating flows for them would let a scan fill the table.
                    self.stats.untracked_packets += 1;
                    return;
                }
                self.create(key, from_lo, seg, ts_us)
            }
        };
        let cfg = self.cfg.reassembly;
        let Some(e) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        let info = e.info();
        let dir = if from_lo == e.lo_is_client {
            Direction::ToServer
        } else {
            Direction::ToClient
        };
        let (this, peer) = match dir {
            Direction::ToServer => (&mut e.to_server, &mut e.to_client),
            Direction::ToClient => (&mut e.to_client, &mut e.to_server),
        };
        if seg.flags.rst && !this.rst_acceptable(seg.seq) {
            // Not even the timestamp: a blind attacker must not keep a connection alive.
            self.stats.rst_out_of_window += 1;
            return;
        }
        e.last_ts_us = ts_us;
        // Eviction's second chance is for flows active after they were queued.
        e.touched |= !created;
        let peer_ack = if seg.flags.ack {
            peer.peer_ack(seg.ack)
        } else {
            None
        };
        let handler = &mut self.handler;
        let stats = &mut self.stats.reassembly;
        let budget = &mut self.budget;
        let Some(state) = e.state.as_mut() else {
            return;
        };
        this.segment(
            seg.seq,
            seg.flags.syn,
            seg.flags.fin,
            seg.payload,
            seg.wire_len,
            ts_us,
            &cfg,
            budget,
            stats,
            &mut |ev| emit(handler, state, &info, dir, ev, peer_ack),
        );
        // Holes the peer has acknowledged, in either direction.
        let (a, b) = (&mut e.to_server, &mut e.to_client);
        a.tick(&cfg, stats, budget, &mut |ev| {
            emit(handler, state, &info, Direction::ToServer, ev, None)
        });
        b.tick(&cfg, stats, budget, &mut |ev| {
            emit(handler, state, &info, Direction::ToClient, ev, None)
        });
        if seg.flags.rst {
            e.rst = true;
        }
        let finished = e.to_server.finished() && e.to_client.finished();
        if e.rst {
            self.close_slot(slot, CloseReason::Rst);
        } else if finished {
            self.close_slot(slot, CloseReason::Fin);
        }
    }

    fn create(&mut self, key: FlowKey, from_lo: bool, seg: &TcpSegment<'_>, ts_us: i64) -> u32 {
        if self.map.len() >= self.cfg.max_flows {
            self.evict_one();
        }
        let sender_is_client = if seg.flags.syn {
            !seg.flags.ack
        } else if let Some(c) = self.handler.classify(seg.payload) {
            c
        } else {
            seg.sport > seg.dport
        };
        self.next_id += 1;
        let e = Entry {
            key,
            id: self.next_id,
            first_ts_us: ts_us,
            last_ts_us: ts_us,
            tunnel: seg.tunnel.map(Box::new),
            to_server: HalfStream::default(),
            to_client: HalfStream::default(),
            lo_is_client: from_lo == sender_is_client,
            handshake_seen: seg.flags.syn,
            touched: false,
            rst: false,
            state: None,
        };
        self.stats.flows_created += 1;
        if seg.flags.syn {
            self.stats.with_handshake += 1;
        } else {
            self.stats.midstream += 1;
        }
        let info = e.info();
        let state = self.handler.open(&info);
        let e = Entry {
            state: Some(state),
            ..e
        };
        let slot = match self.free.pop() {
            Some(i) => {
                if let Some(s) = self.slots.get_mut(i as usize) {
                    *s = Some(e);
                }
                i
            }
            None => {
                self.slots.push(Some(e));
                (self.slots.len() - 1) as u32
            }
        };
        self.map.insert(key, slot);
        self.order.push_back((slot, info.id as u32));
        self.stats.peak_flows = self.stats.peak_flows.max(self.map.len() as u64);
        // Stale queue entries of closed flows are skipped lazily; keep them from piling up.
        if self.order.len() > 2 * self.map.len() + 1024 {
            let slots = &self.slots;
            self.order.retain(|&(i, id)| live(slots, i, id));
        }
        slot
    }

    fn evict_one(&mut self) {
        // Second chance: a flow touched since it was last queued goes to the back once.
        for _ in 0..2 * self.order.len() + 1 {
            let Some((i, id)) = self.order.pop_front() else {
                return;
            };
            if !live(&self.slots, i, id) {
                continue;
            }
            let Some(e) = self.entry_mut(i) else {
                continue;
            };
            if e.touched {
                e.touched = false;
                self.order.push_back((i, id));
                continue;
            }
            self.close_slot(i, CloseReason::Evicted);
            return;
        }
    }

    fn maybe_sweep(&mut self) {
        let every = (self.cfg.idle_timeout_us / 4).max(1_000_000);
        if self.last_sweep_us != i64::MIN && self.now_us - self.last_sweep_us < every {
            return;
        }
        if self.last_sweep_us == i64::MIN {
            self.last_sweep_us = self.now_us;
            return;
        }
        self.last_sweep_us = self.now_us;
        let deadline = self.now_us - self.cfg.idle_timeout_us;
        let idle: Vec<u32> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.as_ref().is_some_and(|e| e.last_ts_us < deadline))
            .map(|(i, _)| i as u32)
            .collect();
        for i in idle {
            self.close_slot(i, CloseReason::Idle);
        }
    }

    /// Closes every connection (end of input).
    pub fn close_all(&mut self) {
        for i in 0..self.slots.len() {
            self.close_slot(i as u32, CloseReason::Shutdown);
        }
        self.order.clear();
    }

    fn close_slot(&mut self, slot: u32, reason: CloseReason) {
        let Some(mut e) = self.slots.get_mut(slot as usize).and_then(Option::take) else {
            return;
        };
        self.map.remove(&e.key);
        self.free.push(slot);
        match reason {
            CloseReason::Fin => self.stats.closed_fin += 1,
            CloseReason::Rst => self.stats.closed_rst += 1,
            CloseReason::Idle => self.stats.closed_idle += 1,
            CloseReason::Evicted => self.stats.evicted += 1,
            CloseReason::Reused => self.stats.closed_reused += 1,
            CloseReason::Shutdown => self.stats.closed_shutdown += 1,
        }
        let info = e.info();
        let handler = &mut self.handler;
        let stats = &mut self.stats.reassembly;
        let budget = &mut self.budget;
        let Some(mut state) = e.state.take() else {
            return;
        };
        e.to_server.close(stats, budget, &mut |ev| {
            emit(handler, &mut state, &info, Direction::ToServer, ev, None)
        });
        e.to_client.close(stats, budget, &mut |ev| {
            emit(handler, &mut state, &info, Direction::ToClient, ev, None)
        });
        handler.close(state, &info, reason);
    }
}

/// Whether queue element (`slot`, `id`) still names the connection in `slot`.
fn live<S>(slots: &[Option<Entry<S>>], slot: u32, id: u32) -> bool {
    slots
        .get(slot as usize)
        .and_then(Option::as_ref)
        .is_some_and(|e| e.id as u32 == id)
}

fn emit<H: FlowHandler>(
    h: &mut H,
    st: &mut H::State,
    info: &FlowInfo,
    dir: Direction,
    ev: StreamEvent<'_>,
    peer_ack: Option<u64>,
) {
    match ev {
        StreamEvent::Data {
            data,
            offset,
            ts_us,
        } => h.data(
            st,
            info,
            dir,
            data,
            ChunkInfo {
                ts_us,
                offset,
                peer_ack,
            },
        ),
        StreamEvent::Gap { len, .. } => h.gap(st, info, dir, len),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::TcpFlags;
    use std::net::Ipv4Addr;

    #[derive(Default)]
    struct Rec {
        log: Vec<String>,
    }

    impl FlowHandler for Rec {
        type State = (u64, String, String);
        fn open(&mut self, f: &FlowInfo) -> Self::State {
            (f.id, String::new(), String::new())
        }
        fn classify(&self, p: &[u8]) -> Option<bool> {
            if p.starts_with(b"GET ") {
                Some(true)
            } else if p.starts_with(b"HTTP/") {
                Some(false)
            } else {
                None
            }
        }
        fn data(
            &mut self,
            st: &mut Self::State,
            _: &FlowInfo,
            d: Direction,
            b: &[u8],
            _: ChunkInfo,
        ) {
            let s = if d == Direction::ToServer {
                &mut st.1
            } else {
                &mut st.2
            };
            s.push_str(&String::from_utf8_lossy(b));
        }
        fn gap(&mut self, st: &mut Self::State, _: &FlowInfo, d: Direction, len: u64) {
            let s = if d == Direction::ToServer {
                &mut st.1
            } else {
                &mut st.2
            };
            s.push_str(&format!("[{len}]"));
        }
        fn close(&mut self, st: Self::State, f: &FlowInfo, r: CloseReason) {
            self.log.push(format!(
                "{} {}->{} {:?} c:{} s:{}",
                st.0, f.client, f.server, r, st.1, st.2
            ));
        }
    }

    fn seg(
        src: u16,
        dst: u16,
        seq: u32,
        ack: u32,
        flags: &str,
        payload: &'static [u8],
    ) -> TcpSegment<'static> {
        TcpSegment {
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, if src == 80 { 2 } else { 1 })),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, if dst == 80 { 2 } else { 1 })),
            sport: src,
            dport: dst,
            seq,
            ack,
            flags: TcpFlags {
                syn: flags.contains('S'),
                ack: flags.contains('A'),
                fin: flags.contains('F'),
                rst: flags.contains('R'),
            },
            payload,
            wire_len: payload.len() as u32,
            vlan: None,
            tunnel: None,
        }
    }

    #[test]
    fn handshake_exchange_and_fin_close() {
        let mut t = FlowTable::new(FlowConfig::default(), Rec::default());
        t.process(&seg(5555, 80, 100, 0, "S", b""), 1);
        t.process(&seg(80, 5555, 900, 101, "SA", b""), 2);
        t.process(&seg(5555, 80, 101, 901, "A", b"GET /"), 3);
        t.process(&seg(80, 5555, 901, 106, "A", b"HTTP/1.1 200"), 4);
        t.process(&seg(5555, 80, 106, 913, "FA", b""), 5);
        t.process(&seg(80, 5555, 913, 107, "FA", b""), 6);
        assert_eq!(
            t.handler.log,
            ["1 10.0.0.1:5555->10.0.0.2:80 Fin c:GET / s:HTTP/1.1 200"]
        );
        assert!(t.is_empty());
        // the last ACK of the closed connection must not create a new flow
        t.process(&seg(5555, 80, 107, 914, "A", b""), 7);
        assert!(t.is_empty());
        assert_eq!(t.stats().untracked_packets, 1);
    }

    #[test]
    fn midstream_client_found_from_a_response_on_a_low_port_client() {
        let mut t = FlowTable::new(FlowConfig::default(), Rec::default());
        // server on the *higher* port: the port rule alone would get it wrong
        t.process(&seg(80, 5555, 7, 1, "A", b"HTTP/1.1 200"), 1);
        t.process(&seg(5555, 80, 1, 19, "RA", b""), 2);
        assert_eq!(t.handler.log.len(), 1);
        assert!(
            t.handler.log[0].contains("10.0.0.1:5555->10.0.0.2:80"),
            "{:?}",
            t.handler.log
        );
    }

    #[test]
    fn rst_closes_and_table_cap_evicts_oldest_idle() {
        let cfg = FlowConfig {
            max_flows: 2,
            ..FlowConfig::default()
        };
        let mut t = FlowTable::new(cfg, Rec::default());
        t.process(&seg(1001, 80, 1, 0, "S", b""), 1);
        t.process(&seg(1002, 80, 1, 0, "S", b""), 2);
        t.process(&seg(1001, 80, 2, 0, "A", b"GET /a"), 3); // touches flow 1
        t.process(&seg(1003, 80, 1, 0, "S", b""), 4); // table full: flow 2 is the oldest idle
        assert_eq!(t.stats().evicted, 1);
        assert!(t.handler.log[0].starts_with("2 "), "{:?}", t.handler.log);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn idle_flows_time_out_on_capture_clock() {
        let cfg = FlowConfig {
            idle_timeout_us: 10_000_000,
            ..FlowConfig::default()
        };
        let mut t = FlowTable::new(cfg, Rec::default());
        t.process(&seg(1001, 80, 1, 0, "A", b"GET /x"), 0);
        t.process(&seg(1002, 80, 1, 0, "A", b"GET /y"), 5_000_000);
        t.process(&seg(1002, 80, 7, 0, "A", b" "), 12_000_000);
        assert_eq!(t.stats().closed_idle, 1);
        assert_eq!(t.len(), 1);
        t.close_all();
        assert_eq!(t.handler.log.len(), 2);
    }

    #[test]
    fn syn_retries_with_new_isns_restart_the_connection() {
        let mut t = FlowTable::new(FlowConfig::default(), Rec::default());
        for isn in [1000u32, 5000, 9000] {
            t.process(&seg(5555, 80, isn, 0, "S", b""), 1);
        }
        t.process(&seg(5555, 80, 9000, 0, "S", b""), 2); // a retransmission of the last one
        t.process(&seg(80, 5555, 70, 9001, "SA", b""), 3);
        t.process(&seg(5555, 80, 9001, 71, "A", b"GET /x"), 4);
        t.close_all();
        let last = t.handler.log.last().unwrap();
        assert!(last.contains("c:GET /x"), "{:?}", t.handler.log);
        assert_eq!(t.stats().closed_reused, 2);
    }

    fn in_vni(mut s: TcpSegment<'static>, vni: u32) -> TcpSegment<'static> {
        let vtep = |n| IpAddr::V4(Ipv4Addr::new(192, 0, 2, n));
        s.tunnel = Some(Tunnel::new(
            crate::tunnel::TunnelKind::Vxlan,
            Some(vni),
            vtep(1),
            vtep(2),
        ));
        s
    }

    #[test]
    fn same_addresses_in_two_vnis_are_two_connections() {
        for (by_tunnel, flows) in [(true, 2), (false, 1)] {
            let cfg = FlowConfig {
                key_by_tunnel: by_tunnel,
                ..FlowConfig::default()
            };
            let mut t = FlowTable::new(cfg, Rec::default());
            t.process(&in_vni(seg(5555, 80, 100, 0, "S", b""), 1), 1);
            t.process(&in_vni(seg(5555, 80, 100, 0, "S", b""), 2), 1);
            t.process(&in_vni(seg(80, 5555, 900, 101, "SA", b""), 1), 2);
            t.process(&in_vni(seg(80, 5555, 900, 101, "SA", b""), 2), 2);
            t.process(&in_vni(seg(5555, 80, 101, 901, "A", b"GET /"), 1), 3);
            t.process(&in_vni(seg(5555, 80, 101, 901, "A", b"GET /"), 2), 3);
            assert_eq!(t.len(), flows, "key_by_tunnel {by_tunnel}");
            t.close_all();
            let with_get = t
                .handler
                .log
                .iter()
                .filter(|l| l.contains("c:GET /"))
                .count();
            assert_eq!(with_get, flows);
        }
        // the reverse direction of a VNI finds its connection (the VNI is per segment, not
        // per direction) and the tunnel is on the connection
        let a = in_vni(seg(5555, 80, 1, 0, "A", b"GET /"), 9);
        let b = in_vni(seg(80, 5555, 1, 0, "A", b"HTTP/1.1 200"), 9);
        assert_eq!(FlowKey::of(&a).0, FlowKey::of(&b).0);
        assert_ne!(FlowKey::of(&a).0, FlowKey::of(&in_vni(a, 8)).0);
        assert_ne!(
            FlowKey::of(&a).0,
            FlowKey::of(&seg(5555, 80, 1, 0, "A", b"x")).0
        );
        let mut t = FlowTable::new(FlowConfig::default(), Rec::default());
        t.process(&a, 1);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn flow_info_carries_the_tunnel() {
        #[derive(Default)]
        struct Seen(Vec<Option<Tunnel>>);
        impl FlowHandler for Seen {
            type State = ();
            fn open(&mut self, f: &FlowInfo) {
                self.0.push(f.tunnel);
            }
            fn classify(&self, _: &[u8]) -> Option<bool> {
                None
            }
            fn data(&mut self, _: &mut (), _: &FlowInfo, _: Direction, _: &[u8], _: ChunkInfo) {}
            fn gap(&mut self, _: &mut (), _: &FlowInfo, _: Direction, _: u64) {}
            fn close(&mut self, _: (), _: &FlowInfo, _: CloseReason) {}
        }
        let mut t = FlowTable::new(FlowConfig::default(), Seen::default());
        let s = in_vni(seg(5555, 80, 1, 0, "S", b""), 77);
        t.process(&s, 1);
        t.process(&seg(5556, 80, 1, 0, "S", b""), 1);
        assert_eq!(t.handler.0, [s.tunnel, None]);
        assert_eq!(t.handler.0[0].and_then(|x| x.id), Some(77));
    }

    #[test]
    fn rst_outside_the_window_is_ignored_and_counted() {
        // RFC 5961 §3.2: only a RST at (or, passively, near) the next expected byte resets.
        let mut t = FlowTable::new(FlowConfig::default(), Rec::default());
        t.process(&seg(5555, 80, 100, 0, "S", b""), 1);
        t.process(&seg(80, 5555, 900, 101, "SA", b""), 2);
        t.process(&seg(5555, 80, 101, 901, "A", b"GET /"), 3);
        // a gigabyte ahead of the client's stream
        t.process(&seg(5555, 80, 106 + (1 << 30), 0, "R", b""), 4);
        // before the server's stream began (an old RST, or a guess)
        t.process(&seg(80, 5555, 900u32.wrapping_sub(100_000), 0, "R", b""), 5);
        // beyond any window the server's stream has shown, FIN and data riding along
        t.process(&seg(80, 5555, 901 + 200_000, 0, "RF", b"HTTP/1.1 500"), 6);
        assert_eq!(t.len(), 1);
        assert_eq!(t.stats().rst_out_of_window, 3);
        assert_eq!(t.stats().closed_rst, 0);
        t.process(&seg(80, 5555, 901, 106, "A", b"HTTP/1.1 200"), 7);
        // exactly the next expected byte: the connection ends, with everything it carried
        t.process(&seg(5555, 80, 106, 913, "R", b""), 8);
        assert!(t.is_empty());
        assert_eq!(t.stats().closed_rst, 1);
        assert_eq!(
            t.handler.log,
            ["1 10.0.0.1:5555->10.0.0.2:80 Rst c:GET / s:HTTP/1.1 200"]
        );
    }

    #[test]
    fn rst_within_the_estimated_window_or_answering_a_syn_resets() {
        // The sensor's idea of the receiver's next byte is approximate: a RST a little ahead
        // of what it saw (bytes the mirror lost) still resets.
        let mut t = FlowTable::new(FlowConfig::default(), Rec::default());
        t.process(&seg(5555, 80, 100, 0, "S", b""), 1);
        t.process(&seg(80, 5555, 900, 101, "SA", b""), 2);
        t.process(&seg(5555, 80, 101, 901, "A", b"GET /"), 3);
        t.process(&seg(5555, 80, 106 + 3000, 901, "RA", b""), 4);
        assert!(t.is_empty());
        assert_eq!(t.stats().closed_rst, 1);
        // A closed port: the server never sent a byte, so there is no window to hold its
        // RST to.
        t.process(&seg(5556, 80, 100, 0, "S", b""), 5);
        t.process(&seg(80, 5556, 0, 101, "RA", b""), 6);
        assert!(t.is_empty());
        assert_eq!(t.stats().closed_rst, 2);
        assert_eq!(t.stats().rst_out_of_window, 0);
    }

    #[test]
    fn rst_answering_an_unacceptable_ack_resets() {
        // A stale ACK answers a SYN (an old connection on the same tuple); the client resets
        // with exactly that ACK number (RFC 9293 §3.10.7.3), then retries with the same SYN.
        // Refusing that RST would keep the stale ACK's sequence numbers for the server's
        // side, and the real connection's response would look like a gap (a Suricata
        // corpus capture, tls-subjectaltname, has this).
        let mut t = FlowTable::new(FlowConfig::default(), Rec::default());
        t.process(&seg(5555, 80, 100, 0, "S", b""), 1);
        t.process(&seg(80, 5555, 7_000_000, 3_000_000, "A", b""), 2);
        t.process(&seg(5555, 80, 3_000_000, 3_000_000, "R", b""), 3);
        assert!(t.is_empty());
        assert_eq!(t.stats().rst_out_of_window, 0);
        t.process(&seg(5555, 80, 100, 0, "S", b""), 4);
        t.process(&seg(80, 5555, 900, 101, "SA", b""), 5);
        t.process(&seg(5555, 80, 101, 901, "A", b"GET /"), 6);
        t.process(&seg(80, 5555, 901, 106, "A", b"HTTP/1.1 200"), 7);
        t.process(&seg(5555, 80, 106, 913, "F", b""), 8);
        t.process(&seg(80, 5555, 913, 107, "F", b""), 9);
        assert_eq!(
            t.handler.log.last().map(String::as_str),
            Some("2 10.0.0.1:5555->10.0.0.2:80 Fin c:GET / s:HTTP/1.1 200")
        );
    }

    #[test]
    fn caps_split_across_tables() {
        let c = FlowConfig {
            max_flows: 5000,
            ..FlowConfig::default()
        };
        assert_eq!(c.split(3).max_flows, 1667);
        assert_eq!(c.split(1), c);
        assert_eq!(c.split(0), c);
        assert_eq!(
            c.split(2).reassembly.max_held_bytes_total,
            c.reassembly.max_held_bytes_total / 2
        );
        assert_eq!(c.split(9000).max_flows, 1);
    }

    #[test]
    fn packed_keys_give_back_addresses_and_vlan() {
        let v6 = |n| IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, n));
        let mut s = seg(5555, 80, 1, 0, "A", b"GET /");
        s.src = v6(1);
        s.dst = v6(2);
        s.vlan = Some(0);
        let mut t = FlowTable::new(FlowConfig::default(), Opened::default());
        t.process(&s, 1);
        // IPv4 and its IPv4-mapped IPv6 form are different connections
        let mapped = |a: Ipv4Addr| IpAddr::V6(a.to_ipv6_mapped());
        let mut m = seg(5555, 80, 1, 0, "A", b"GET /");
        m.src = mapped(Ipv4Addr::new(10, 0, 0, 1));
        m.dst = mapped(Ipv4Addr::new(10, 0, 0, 2));
        t.process(&m, 1);
        t.process(&seg(5555, 80, 1, 0, "A", b"GET /"), 1);
        assert_eq!(t.len(), 3);
        t.close_all();
        let got: Vec<(SocketAddr, SocketAddr, Option<u16>)> = t
            .handler
            .0
            .iter()
            .map(|f| (f.client, f.server, f.vlan))
            .collect();
        assert_eq!(
            got,
            [
                (
                    SocketAddr::new(v6(1), 5555),
                    SocketAddr::new(v6(2), 80),
                    Some(0)
                ),
                (
                    SocketAddr::new(m.src, 5555),
                    SocketAddr::new(m.dst, 80),
                    None
                ),
                (
                    "10.0.0.1:5555".parse().unwrap(),
                    "10.0.0.2:80".parse().unwrap(),
                    None
                ),
            ]
        );
    }

    #[derive(Default)]
    struct Opened(Vec<FlowInfo>);
    impl FlowHandler for Opened {
        type State = ();
        fn open(&mut self, f: &FlowInfo) {
            self.0.push(*f);
        }
        fn classify(&self, p: &[u8]) -> Option<bool> {
            Some(p.starts_with(b"GET "))
        }
        fn data(&mut self, _: &mut (), _: &FlowInfo, _: Direction, _: &[u8], _: ChunkInfo) {}
        fn gap(&mut self, _: &mut (), _: &FlowInfo, _: Direction, _: u64) {}
        fn close(&mut self, _: (), _: &FlowInfo, _: CloseReason) {}
    }

    #[test]
    fn per_connection_state_stays_small() {
        // At a million connections each byte here is a megabyte (issue #9).
        assert_eq!(std::mem::size_of::<FlowKey>(), 48);
        assert!(std::mem::size_of::<HalfStream>() <= 56);
        assert!(std::mem::size_of::<Entry<()>>() <= 200);
    }

    #[test]
    fn symmetric_hash_is_direction_free() {
        let a = seg(5555, 80, 0, 0, "A", b"x");
        let b = seg(80, 5555, 0, 0, "A", b"x");
        assert_eq!(
            FlowKey::of(&a).0.symmetric_hash(),
            FlowKey::of(&b).0.symmetric_hash()
        );
    }
}
