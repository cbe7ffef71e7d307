//! The log's writer: a bounded byte queue drained by its own thread, so a slow or stalled log pipe
//! (a full stdout pipe, a paused journald) never blocks a runtime worker. A request only appends its
//! finished line to the queue under a short lock; the writer thread takes the whole queue at once and
//! writes it with one `write_all`, so lines never interleave and a burst costs one syscall, not one per
//! line. When the queue is full the line is dropped and counted (`relayapi_log_lines_dropped_total`),
//! never waited for. Formatting the lines is left to `log.rs`.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Bytes of lines held while the sink is slower than the relay: about 4,000 access lines of ~250 bytes,
/// a few hundred milliseconds of full load. The memory a stalled sink can cost is twice this (the queue
/// plus the batch the writer is stuck on), never more, whatever the request rate.
pub const QUEUE_BYTES: usize = 1 << 20;

/// How long shutdown waits for queued lines to reach the sink. A sink stalled for longer loses them
/// rather than keeping a stopped relay alive.
pub const FLUSH_DEADLINE: Duration = Duration::from_secs(5);

/// How long the writer lets lines gather after writing a batch before it looks again. Without it a busy
/// relay found the writer asleep after nearly every line and paid a futex wake, a context switch and a
/// `write` per request (measured: the access log nearly doubled CPU per request). While the writer
/// lingers it is not idle, so requests append without waking it; a line reaches the sink at most this
/// much later, and a busy relay writes at most one batch per linger. 20 ms rather than 5: at 1,000
/// requests/s a batch holds about 20 lines instead of 5, a quarter of the writer's wake-ups and
/// `write`s per line. The linger ends early when the queue reaches [`WAKE_BYTES`] or the writer is
/// closed, so it never makes the queue overflow and never delays shutdown.
pub const LINGER: Duration = Duration::from_millis(20);

/// Queued bytes at which a lingering writer is woken to write them now: half the queue, so however
/// fast lines arrive the queue has room for as much again while the writer wakes. Lines are dropped
/// only when the sink is slower than the relay, never because the writer lingered.
pub const WAKE_BYTES: usize = QUEUE_BYTES / 2;

struct State {
    queue: Vec<u8>,
    /// The writer thread is waiting for lines: the next push must wake it.
    idle: bool,
    /// The writer thread is lingering (see [`LINGER`]): the push that fills the queue to
    /// [`WAKE_BYTES`] must wake it.
    lingering: bool,
    /// No more lines are taken; the thread writes what is queued and ends.
    closed: bool,
    /// The thread has written everything queued before `closed` and ended.
    finished: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer thread (lines queued, or closing).
    wake: Condvar,
    /// Wakes `close` once the thread has finished.
    finished: Condvar,
    dropped: Arc<AtomicU64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One queue and the thread that writes it to one sink. Cheap to share behind an `Arc`.
pub struct LogWriter {
    shared: Arc<Shared>,
}

impl LogWriter {
    /// Start the writer thread for `sink`. Every line dropped (queue full, queue closed, or the sink
    /// failing) adds one to `dropped`. Fails only when the system refuses a new thread.
    pub fn spawn(
        name: &str,
        sink: Box<dyn Write + Send>,
        dropped: Arc<AtomicU64>,
    ) -> std::io::Result<LogWriter> {
        LogWriter::spawn_lingering(name, sink, dropped, LINGER)
    }

    /// [`LogWriter::spawn`] with another linger than [`LINGER`] (tests).
    fn spawn_lingering(
        name: &str,
        sink: Box<dyn Write + Send>,
        dropped: Arc<AtomicU64>,
        linger: Duration,
    ) -> std::io::Result<LogWriter> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: Vec::new(),
                idle: false,
                lingering: false,
                closed: false,
                finished: false,
            }),
            wake: Condvar::new(),
            finished: Condvar::new(),
            dropped,
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || drain(&s, sink, linger))?;
        Ok(LogWriter { shared })
    }

    /// Queue one whole line (with its newline). Never blocks on the sink: when the queue holds
    /// `QUEUE_BYTES` already, or is closed, the line is dropped and counted instead.
    pub fn push(&self, line: &[u8]) {
        let mut st = self.shared.lock();
        if st.closed || st.queue.len() + line.len() > QUEUE_BYTES {
            drop(st);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let before = st.queue.len();
        st.queue.extend_from_slice(line);
        // Only the push that finds the thread asleep, or the one that takes a lingering thread's queue
        // past WAKE_BYTES, pays for waking it.
        let wake = std::mem::take(&mut st.idle)
            || (st.lingering && before < WAKE_BYTES && st.queue.len() >= WAKE_BYTES);
        drop(st);
        if wake {
            self.shared.wake.notify_one();
        }
    }

    /// Stop taking lines and wait (at most `within`) until every line queued so far is written. True when
    /// they all were; false when the sink stalled past the deadline (those lines are then lost).
    pub fn close(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut st = self.shared.lock();
        st.closed = true;
        self.shared.wake.notify_one();
        while !st.finished {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self
                .shared
                .finished
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }
}

/// The writer thread: take the whole queue, write it outside the lock, linger, repeat; end once closed
/// and empty.
fn drain(shared: &Shared, mut sink: Box<dyn Write + Send>, linger: Duration) {
    let mut batch = Vec::new();
    let mut st = shared.lock();
    loop {
        while st.queue.is_empty() && !st.closed {
            st.idle = true;
            st = shared.wake.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.idle = false;
        if st.queue.is_empty() {
            st.finished = true;
            shared.finished.notify_all();
            return;
        }
        // The emptied batch becomes the next queue, so both buffers keep their capacity.
        std::mem::swap(&mut st.queue, &mut batch);
        drop(st);
        if sink.write_all(&batch).and_then(|()| sink.flush()).is_err() {
            // A closed or broken sink: these lines are lost; say how many.
            let lines = batch.iter().filter(|&&b| b == b'\n').count() as u64;
            shared.dropped.fetch_add(lines, Ordering::Relaxed);
        }
        batch.clear();
        // Let the next lines gather (see LINGER), unless closing or the queue fills up meanwhile.
        st = shared.lock();
        let until = Instant::now() + linger;
        st.lingering = true;
        while !st.closed && st.queue.len() < WAKE_BYTES {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = (shared.wake.wait_timeout(st, left))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        st.lingering = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A sink that holds every write until the test lets it through, and records what it wrote.
    struct Gated {
        gate: mpsc::Receiver<()>,
        out: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gated {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let _ = self.gate.recv();
            self.out.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A writer on a [`Gated`] sink: `open` lets writes through, `out` is what was written.
    struct Harness {
        w: LogWriter,
        open: mpsc::Sender<()>,
        out: Arc<Mutex<Vec<u8>>>,
        dropped: Arc<AtomicU64>,
    }

    fn gated() -> Harness {
        let (open, gate) = mpsc::channel();
        let out = Arc::new(Mutex::new(Vec::new()));
        let dropped = Arc::new(AtomicU64::new(0));
        let sink = Gated {
            gate,
            out: out.clone(),
        };
        let w = LogWriter::spawn("test-log", Box::new(sink), dropped.clone()).unwrap();
        Harness {
            w,
            open,
            out,
            dropped,
        }
    }

    #[test]
    fn a_stalled_sink_drops_and_counts_instead_of_blocking() {
        let Harness {
            w,
            open,
            out,
            dropped,
        } = gated();
        let line = [b'x'; 99];
        let line = [&line[..], b"\n"].concat();
        // The sink never lets a write through: pushing far more than the queue holds still returns.
        let n = 3 * QUEUE_BYTES / line.len();
        for _ in 0..n {
            w.push(&line);
        }
        let d = dropped.load(Ordering::Relaxed) as usize;
        // At most the queue and one batch are held; everything else was dropped and counted.
        assert!(d >= n - 2 * QUEUE_BYTES / line.len(), "{d} of {n}");
        assert!(d < n, "{d} of {n}");
        // Once the sink moves again, what was held comes out whole, lines intact.
        drop(open);
        assert!(w.close(Duration::from_secs(30)));
        let got = out.lock().unwrap();
        assert_eq!(got.len(), (n - d) * line.len());
        assert!(got.chunks(line.len()).all(|c| c == line.as_slice()));
    }

    #[test]
    fn close_writes_every_queued_line_first() {
        let Harness {
            w,
            open,
            out,
            dropped,
        } = gated();
        for i in 0..1000 {
            w.push(format!("line {i}\n").as_bytes());
        }
        // Let writes through from another thread while `close` waits.
        let opener = std::thread::spawn(move || {
            for _ in 0..1000 {
                if open.send(()).is_err() {
                    break;
                }
            }
        });
        assert!(w.close(Duration::from_secs(30)));
        opener.join().unwrap();
        let expected: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(String::from_utf8_lossy(&out.lock().unwrap()), expected);
        assert_eq!(dropped.load(Ordering::Relaxed), 0);
        // A closed writer takes nothing more.
        w.push(b"late\n");
        assert_eq!(dropped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn close_gives_up_on_a_sink_that_never_moves() {
        let Harness { w, open: _open, .. } = gated();
        w.push(b"stuck\n");
        assert!(!w.close(Duration::from_millis(50)));
    }

    #[test]
    fn a_failing_sink_counts_its_lost_lines() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let dropped = Arc::new(AtomicU64::new(0));
        let w = LogWriter::spawn("test-log", Box::new(Broken), dropped.clone()).unwrap();
        for _ in 0..10 {
            w.push(b"a\n");
        }
        assert!(w.close(Duration::from_secs(30)));
        assert_eq!(dropped.load(Ordering::Relaxed), 10);
    }

    /// A sink that writes at once and records what it wrote.
    struct Recorded(Arc<Mutex<Vec<u8>>>);

    impl Write for Recorded {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A writer that lingers an hour after each batch, which has written its first line and lingers
    /// now: only an early end of the linger gets anything else out within a test's time.
    fn lingering() -> (LogWriter, Arc<Mutex<Vec<u8>>>, Arc<AtomicU64>) {
        let out = Arc::new(Mutex::new(Vec::new()));
        let dropped = Arc::new(AtomicU64::new(0));
        let sink = Box::new(Recorded(out.clone()));
        let hour = Duration::from_secs(3600);
        let w = LogWriter::spawn_lingering("test-log", sink, dropped.clone(), hour).unwrap();
        w.push(b"first\n");
        wait_until(|| out.lock().unwrap().len() == 6);
        (w, out, dropped)
    }

    fn wait_until(done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "not within 30 s");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_queue_filling_up_ends_the_linger() {
        let (w, out, dropped) = lingering();
        let line = [&[b'x'; 1023][..], b"\n"].concat();
        let lines = WAKE_BYTES / line.len();
        // Below WAKE_BYTES the lines wait for the linger to end...
        for _ in 0..lines - 1 {
            w.push(&line);
        }
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(out.lock().unwrap().len(), 6);
        // ...and the line that fills the queue to WAKE_BYTES has them written now, none dropped.
        w.push(&line);
        wait_until(|| out.lock().unwrap().len() == 6 + lines * line.len());
        assert_eq!(dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn close_ends_the_linger() {
        let (w, out, dropped) = lingering();
        w.push(b"second\n");
        assert!(w.close(Duration::from_secs(30)));
        assert_eq!(&out.lock().unwrap()[..], b"first\nsecond\n");
        assert_eq!(dropped.load(Ordering::Relaxed), 0);
    }
}
