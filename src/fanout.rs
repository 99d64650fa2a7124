//! The hand-off between workers and sinks when the pipeline runs on several threads.
//!
//! Owns the sink thread: it holds the real sinks (files, stdout, Kafka) and receives batches of
//! serialised events from every worker over one bounded channel, so the order of one worker's
//! events is kept and the sinks need no locking. Workers see a [`ChannelSink`], which batches
//! events (one hand-off per ~256 KiB or per tick instead of one per event).
use crate::sink::{Event, EventKind, Sink, SinkError};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Events serialised back to back, with their kinds and key/JSON ranges.
#[derive(Default)]
pub struct EventBatch {
    buf: Vec<u8>,
    items: Vec<(EventKind, Range<usize>, Range<usize>)>,
}

/// Bytes of events per hand-off.
const BATCH_BYTES: usize = 256 * 1024;

enum Msg {
    Events(EventBatch),
    Flush,
    /// Reopen the outputs (SIGHUP).
    Reopen,
}

/// A worker's view of the sinks.
pub struct ChannelSink {
    tx: Sender<Msg>,
    batch: EventBatch,
}

impl ChannelSink {
    fn send(&mut self) -> Result<(), SinkError> {
        if self.batch.items.is_empty() {
            return Ok(());
        }
        let b = std::mem::take(&mut self.batch);
        self.tx.send(Msg::Events(b)).map_err(|_| closed())
    }
}

fn closed() -> SinkError {
    SinkError::Io {
        sink: "sink thread".into(),
        error: std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the sink thread stopped"),
    }
}

impl Sink for ChannelSink {
    fn name(&self) -> &str {
        "sink thread"
    }

    fn write(&mut self, ev: &Event<'_>) -> Result<(), SinkError> {
        let b = &mut self.batch;
        let k0 = b.buf.len();
        b.buf.extend_from_slice(ev.key.as_bytes());
        let j0 = b.buf.len();
        b.buf.extend_from_slice(ev.json);
        b.items.push((ev.kind, k0..j0, j0..b.buf.len()));
        if b.buf.len() >= BATCH_BYTES {
            self.send()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.send()?;
        self.tx.send(Msg::Flush).map_err(|_| closed())
    }
}

/// The thread that owns the real sinks.
pub struct SinkThread {
    tx: Option<Sender<Msg>>,
    handle: Option<JoinHandle<Result<(), SinkError>>>,
    errors: Arc<AtomicU64>,
}

impl SinkThread {
    /// Starts the thread; `queue` batches may wait before senders block.
    pub fn start(mut sinks: Vec<Box<dyn Sink>>, queue: usize) -> Self {
        let (tx, rx): (Sender<Msg>, Receiver<Msg>) = bounded(queue.max(2));
        let errors = Arc::new(AtomicU64::new(0));
        let errs = Arc::clone(&errors);
        let handle = std::thread::Builder::new()
            .name("apitap-sinks".into())
            .spawn(move || {
                let mut logged = false;
                let mut note = |e: SinkError| {
                    errs.fetch_add(1, Ordering::Relaxed);
                    if !logged {
                        eprintln!("apitap: {e} (further errors are counted, not logged)");
                        logged = true;
                    }
                };
                while let Ok(m) = rx.recv() {
                    match m {
                        Msg::Events(b) => {
                            for (kind, k, j) in &b.items {
                                let key = std::str::from_utf8(&b.buf[k.clone()]).unwrap_or("");
                                let ev = Event {
                                    kind: *kind,
                                    key,
                                    json: &b.buf[j.clone()],
                                };
                                for s in &mut sinks {
                                    if let Err(e) = s.write(&ev) {
                                        note(e);
                                    }
                                }
                            }
                        }
                        Msg::Flush => {
                            for s in &mut sinks {
                                if let Err(e) = s.flush() {
                                    note(e);
                                }
                            }
                        }
                        Msg::Reopen => {
                            for s in &mut sinks {
                                if let Err(e) = s.reopen() {
                                    eprintln!("apitap: cannot reopen an output: {e}");
                                    errs.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                }
                // close, not flush: a remote sink drains (boundedly) and reports what it could
                // not deliver, which must fail the run rather than vanish in a destructor.
                let mut first = None;
                for s in &mut sinks {
                    if let Err(e) = s.close() {
                        errs.fetch_add(1, Ordering::Relaxed);
                        first.get_or_insert(e);
                    }
                }
                first.map_or(Ok(()), Err)
            });
        let handle = match handle {
            Ok(h) => Some(h),
            Err(e) => {
                eprintln!("apitap: cannot start the sink thread: {e}");
                None
            }
        };
        SinkThread {
            tx: Some(tx),
            handle,
            errors,
        }
    }

    /// A sender for one worker.
    pub fn sender(&self) -> ChannelSink {
        let (dead_tx, _) = bounded(1);
        ChannelSink {
            tx: self.tx.clone().unwrap_or(dead_tx),
            batch: EventBatch::default(),
        }
    }

    /// Asks the sink thread to reopen its outputs after what was sent before (SIGHUP).
    pub fn reopen(&self) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Reopen);
        }
    }

    /// The write-failure counter itself, readable after [`SinkThread::finish`].
    pub fn error_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.errors)
    }

    /// Write failures so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Waits for every sender to finish, flushes and stops the sinks.
    pub fn finish(mut self) -> Result<(), SinkError> {
        self.tx = None;
        match self.handle.take() {
            Some(h) => h.join().unwrap_or_else(|_| Err(closed())),
            None => Ok(()),
        }
    }
}
