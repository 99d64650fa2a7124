//! Packet-level impairment of a capture file, for robustness tests.
//!
//! [`impair`] reads a pcap file and writes a copy in which whole packets are
//! dropped, duplicated (written twice in a row) or swapped with the next packet,
//! each with its own probability, deterministically for a given seed (a
//! self-contained SplitMix64 generator, no `rand` crate). The link type of the
//! input is kept.
//!
//! Per input packet, in input order, three numbers are drawn (always, so one
//! decision never shifts the others): drop?, duplicate?, swap?
//! * dropped packets are not written (and take no part in a swap);
//! * a packet chosen for a swap is held back and written right after the next
//!   kept packet; a held packet at the end of the input is written last;
//! * a duplicated packet is written twice in a row (wherever it lands).
//!
//! So `output == input - dropped + duplicated`. Packets keep their original
//! headers (timestamps included), so a swapped pair shows time going backwards,
//! as a reordering on the wire would.

use std::path::Path;

use anyhow::{Context, Result};
use pcap::{Capture, Linktype, Packet, PacketHeader};

/// What [`impair`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImpairStats {
    /// Packets read from the input.
    pub input: u64,
    /// Packets written to the output.
    pub output: u64,
    /// Input packets not written.
    pub dropped: u64,
    /// Packets written twice (each adds one to `output`).
    pub duplicated: u64,
    /// Pairs of packets whose order was exchanged.
    pub swapped: u64,
}

/// SplitMix64: tiny, fast, good enough to pick packets; fully determined by the seed.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `pct` percent (0.0..=100.0).
    pub fn chance_pct(&mut self, pct: f64) -> bool {
        self.next_f64() * 100.0 < pct
    }
}

struct OwnedPacket {
    header: PacketHeader,
    data: Vec<u8>,
}

impl OwnedPacket {
    fn from_packet(p: &Packet<'_>) -> Self {
        OwnedPacket {
            header: *p.header,
            data: p.data.to_vec(),
        }
    }
}

/// Copy `input` to `output`, dropping, duplicating and swapping whole packets.
///
/// `drop_pct`, `dup_pct` and `swap_pct` are percentages (1.0 = 1 % of the input
/// packets). The same `seed` and arguments always give the same output.
pub fn impair(
    input: &Path,
    output: &Path,
    seed: u64,
    drop_pct: f64,
    dup_pct: f64,
    swap_pct: f64,
) -> Result<ImpairStats> {
    for (name, v) in [
        ("drop_pct", drop_pct),
        ("dup_pct", dup_pct),
        ("swap_pct", swap_pct),
    ] {
        anyhow::ensure!(
            (0.0..=100.0).contains(&v),
            "{name} must be within 0..=100, got {v}"
        );
    }
    let mut cap = Capture::from_file(input)
        .with_context(|| format!("opening capture {}", input.display()))?;
    let linktype: Linktype = cap.get_datalink();
    let dead = Capture::dead(linktype).context("pcap dead handle")?;
    let mut out = dead
        .savefile(output)
        .with_context(|| format!("creating capture {}", output.display()))?;

    let mut rng = SplitMix64::new(seed);
    let mut stats = ImpairStats::default();
    let mut held: Option<(OwnedPacket, bool)> = None; // (packet, duplicate it)

    loop {
        let pkt = match cap.next_packet() {
            Ok(p) => OwnedPacket::from_packet(&p),
            Err(pcap::Error::NoMorePackets) => break,
            Err(e) => return Err(e).with_context(|| format!("reading {}", input.display())),
        };
        stats.input += 1;
        let drop = rng.chance_pct(drop_pct);
        let dup = rng.chance_pct(dup_pct);
        let swap = rng.chance_pct(swap_pct);
        if drop {
            stats.dropped += 1;
            continue;
        }
        if let Some((h, hdup)) = held.take() {
            // the held packet goes after this one
            write(&mut out, &pkt, dup, &mut stats);
            write(&mut out, &h, hdup, &mut stats);
            stats.swapped += 1;
        } else if swap {
            held = Some((pkt, dup));
        } else {
            write(&mut out, &pkt, dup, &mut stats);
        }
    }
    if let Some((h, hdup)) = held.take() {
        write(&mut out, &h, hdup, &mut stats);
    }
    out.flush()
        .with_context(|| format!("writing {}", output.display()))?;
    debug_assert_eq!(stats.output, stats.input - stats.dropped + stats.duplicated);
    Ok(stats)
}

fn write(out: &mut pcap::Savefile, p: &OwnedPacket, dup: bool, stats: &mut ImpairStats) {
    let pkt = Packet::new(&p.header, &p.data);
    out.write(&pkt);
    stats.output += 1;
    if dup {
        out.write(&pkt);
        stats.output += 1;
        stats.duplicated += 1;
    }
}

/// Number of packets in a capture file.
pub fn count_packets(path: &Path) -> Result<u64> {
    let mut cap =
        Capture::from_file(path).with_context(|| format!("opening capture {}", path.display()))?;
    let mut n = 0u64;
    loop {
        match cap.next_packet() {
            Ok(_) => n += 1,
            Err(pcap::Error::NoMorePackets) => return Ok(n),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
}
