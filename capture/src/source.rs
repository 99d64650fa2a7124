//! Packet sources: pcap/pcapng files (several, read in order) and live interfaces, both through
//! libpcap (the `pcap` crate), which reads both file formats and applies BPF filters in the
//! kernel for live capture.
use std::path::{Path, PathBuf};

/// How long a live capture sleeps when the kernel has nothing for it.
const IDLE_SLEEP_MS: u64 = 5;

/// One captured frame, borrowed from libpcap's buffer until the next call.
#[derive(Debug)]
pub struct Frame<'a> {
    /// Capture time, µs since the Unix epoch.
    pub ts_us: i64,
    /// Link type of the frame (LINKTYPE_* value, see [`crate::decode::linktype`]).
    pub linktype: i32,
    /// The captured bytes.
    pub data: &'a [u8],
    /// The frame's length on the wire (larger than `data` when cut by the snap length).
    pub wire_len: u32,
}

/// Errors opening or reading a packet source, worded for the person running the sensor.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The capture file could not be opened or is not a capture.
    #[error("cannot read {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What libpcap said, with a hint.
        reason: String,
    },
    /// Live capture needs privileges.
    #[error("cannot capture on {iface}: permission denied. Capturing needs CAP_NET_RAW: run as root or `sudo setcap cap_net_raw,cap_net_admin=eip $(command -v apitap)`")]
    Permission {
        /// The interface.
        iface: String,
    },
    /// The interface does not exist.
    #[error("cannot capture on {iface}: no such device; available: {available} (list them with `apitap interfaces`)")]
    NoDevice {
        /// The interface asked for.
        iface: String,
        /// Interfaces libpcap can open.
        available: String,
    },
    /// The BPF filter did not compile.
    #[error("invalid capture filter {expr:?}: {reason}")]
    Filter {
        /// The expression.
        expr: String,
        /// libpcap's message.
        reason: String,
    },
    /// Any other libpcap failure.
    #[error("capture on {iface} failed: {reason}")]
    Live {
        /// The interface.
        iface: String,
        /// libpcap's message.
        reason: String,
    },
}

/// Live capture options.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// Interface name.
    pub iface: String,
    /// BPF filter expression.
    pub bpf: Option<String>,
    /// Snap length.
    pub snaplen: i32,
    /// Promiscuous mode.
    pub promisc: bool,
    /// Kernel buffer size in bytes.
    pub buffer_bytes: i32,
    /// Read timeout in ms (non-immediate mode batches packets up to this long).
    pub timeout_ms: i32,
}

/// Kernel and interface drop counters of a live capture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CaptureDrops {
    /// Packets received by the filter.
    pub received: u64,
    /// Dropped because the kernel buffer was full (the sensor fell behind).
    pub kernel_dropped: u64,
    /// Dropped by the interface or driver.
    pub if_dropped: u64,
}

enum Inner {
    Files {
        paths: Vec<PathBuf>,
        next: usize,
        cap: Option<pcap::Capture<pcap::Offline>>,
    },
    Live(pcap::Capture<pcap::Active>),
}

/// A source of frames.
pub struct PacketSource {
    inner: Inner,
    linktype: i32,
    iface: String,
}

fn frame<'a>(linktype: i32, p: &pcap::Packet<'a>) -> Frame<'a> {
    let h = p.header;
    Frame {
        ts_us: h.ts.tv_sec * 1_000_000 + h.ts.tv_usec,
        linktype,
        data: p.data,
        wire_len: h.len,
    }
}

fn open_file(path: &Path) -> Result<pcap::Capture<pcap::Offline>, SourceError> {
    if !path.exists() {
        return Err(SourceError::File {
            path: path.into(),
            reason: "no such file".into(),
        });
    }
    pcap::Capture::from_file(path).map_err(|e| SourceError::File {
        path: path.into(),
        reason: format!("{e} (is it a pcap or pcapng capture? `tcpdump -r FILE -c 1` tells)"),
    })
}

/// The capture devices libpcap can open, as `name (description)`.
pub fn list_devices() -> Vec<String> {
    pcap::Device::list()
        .map(|ds| {
            ds.into_iter()
                .map(|d| match d.desc {
                    Some(desc) => format!("{} ({desc})", d.name),
                    None => d.name,
                })
                .collect()
        })
        .unwrap_or_default()
}

impl PacketSource {
    /// Opens capture files, read one after the other. All are checked up front so that a typo
    /// in the last one does not surface after minutes of replay.
    pub fn files(paths: &[PathBuf]) -> Result<Self, SourceError> {
        let mut first = None;
        for p in paths {
            let c = open_file(p)?;
            if first.is_none() {
                first = Some(c);
            }
        }
        let linktype = first.as_ref().map_or(1, |c| c.get_datalink().0);
        Ok(PacketSource {
            inner: Inner::Files {
                paths: paths.to_vec(),
                next: 1,
                cap: first,
            },
            linktype,
            iface: String::new(),
        })
    }

    /// Opens a live interface.
    pub fn live(o: &LiveOptions) -> Result<Self, SourceError> {
        let devices = pcap::Device::list().unwrap_or_default();
        if o.iface != "any" && !devices.iter().any(|d| d.name == o.iface) {
            return Err(SourceError::NoDevice {
                iface: o.iface.clone(),
                available: devices
                    .iter()
                    .map(|d| d.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let live = |e: pcap::Error| {
            let msg = e.to_string();
            if msg.contains("ermission") || msg.contains("not permitted") {
                SourceError::Permission {
                    iface: o.iface.clone(),
                }
            } else {
                SourceError::Live {
                    iface: o.iface.clone(),
                    reason: msg,
                }
            }
        };
        let cap = pcap::Capture::from_device(o.iface.as_str())
            .map_err(live)?
            .promisc(o.promisc)
            .snaplen(o.snaplen)
            .buffer_size(o.buffer_bytes)
            .timeout(o.timeout_ms)
            .immediate_mode(false)
            .open()
            .map_err(live)?;
        // Non-blocking: with TPACKET_V3 libpcap's read timeout only starts once a packet has
        // arrived, so a blocking read on a quiet interface would never return to notice a stop
        // request. An empty read becomes `Event::Idle` and a short sleep.
        let mut cap = cap.setnonblock().map_err(live)?;
        if let Some(expr) = &o.bpf {
            cap.filter(expr, true).map_err(|e| SourceError::Filter {
                expr: expr.clone(),
                reason: e.to_string(),
            })?;
        }
        let linktype = cap.get_datalink().0;
        Ok(PacketSource {
            inner: Inner::Live(cap),
            linktype,
            iface: o.iface.clone(),
        })
    }

    /// Link type of the current source.
    pub fn linktype(&self) -> i32 {
        self.linktype
    }

    /// Reads frames until the input ends (files) or `stop` is set, handing each to `f`. For
    /// live capture, `f` also gets [`Event::Idle`] whenever a read times out with no packet, so
    /// the caller can expire flows and report while the wire is quiet.
    pub fn run(
        &mut self,
        stop: &std::sync::atomic::AtomicBool,
        mut f: impl FnMut(Event<'_>),
    ) -> Result<(), SourceError> {
        use std::sync::atomic::Ordering;
        match &mut self.inner {
            Inner::Files { paths, next, cap } => {
                while let Some(c) = cap.as_mut() {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    match c.next_packet() {
                        Ok(p) => f(Event::Frame(frame(self.linktype, &p))),
                        // End of this file; a damaged last record (a capture cut short) ends it too.
                        Err(_) => {
                            if *next >= paths.len() {
                                *cap = None;
                            } else {
                                let c2 = open_file(&paths[*next])?;
                                *next += 1;
                                self.linktype = c2.get_datalink().0;
                                *cap = Some(c2);
                            }
                        }
                    }
                }
                Ok(())
            }
            Inner::Live(c) => {
                while !stop.load(Ordering::Relaxed) {
                    match c.next_packet() {
                        Ok(p) => f(Event::Frame(frame(self.linktype, &p))),
                        Err(pcap::Error::TimeoutExpired) => {
                            f(Event::Idle);
                            std::thread::sleep(std::time::Duration::from_millis(IDLE_SLEEP_MS));
                        }
                        Err(e) => {
                            return Err(SourceError::Live {
                                iface: self.iface.clone(),
                                reason: e.to_string(),
                            })
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// Kernel and interface drop counters (live capture only).
    pub fn drops(&mut self) -> Option<CaptureDrops> {
        match &mut self.inner {
            Inner::Live(c) => c.stats().ok().map(|s| CaptureDrops {
                received: u64::from(s.received),
                kernel_dropped: u64::from(s.dropped),
                if_dropped: u64::from(s.if_dropped),
            }),
            Inner::Files { .. } => None,
        }
    }
}

/// What a source hands to its consumer.
#[derive(Debug)]
pub enum Event<'a> {
    /// A captured frame.
    Frame(Frame<'a>),
    /// A live read timed out with no packet.
    Idle,
}
