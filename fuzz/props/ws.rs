//! WebSocket frames (`ws/frame.rs`) as the relay reads them from strangers on both legs. The reader is
//! fed the same bytes whole, cut at one point chosen by the input, and byte by byte (inputs up to 512
//! bytes): the events and the verdict must not depend on how the socket cut the stream. Each complete
//! data message must equal the reference: the frames' payloads, unmasked, joined across fragments, as a
//! short parser written here straight from RFC 6455 §5.2 reads them.
//!
//! Input: a flag byte (bit 0: the sender is the client; the rest: where to cut), then the stream.

use relayapi::ws::frame::{Event, FrameReader, Sender};

const MAX_PAYLOAD: u64 = 4096;

/// Everything the reader reported, flattened, and its verdict.
fn run(sender: Sender, data: &[u8], cuts: &[usize]) -> (Vec<String>, bool) {
    let mut r = FrameReader::new(sender, MAX_PAYLOAD);
    let mut scratch = Vec::new();
    let mut out = Vec::new();
    let mut msg = Vec::new();
    let mut at = 0;
    for &c in cuts.iter().chain(std::iter::once(&data.len())) {
        let c = c.clamp(at, data.len());
        let fed = r.feed(&data[at..c], &mut scratch, &mut |e| match e {
            Event::Data { bytes, .. } => msg.extend_from_slice(bytes),
            Event::MessageEnd { message } => {
                out.push(format!("{message:?}:{}", hex(&msg)));
                msg.clear();
            }
            Event::Close { code } => out.push(format!("close:{code:?}")),
        });
        if fed.is_err() {
            return (out, false);
        }
        at = c;
    }
    (out, true)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The reference: whole data messages of a stream, read frame by frame, up to the first frame that
/// is incomplete or breaks a rule the reader also checks (then `None` for the verdict part).
fn reference(sender: Sender, mut b: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut parts: Option<(u8, Vec<u8>)> = None;
    while b.len() >= 2 {
        let (fin, op, masked) = (b[0] & 0x80 != 0, b[0] & 0x0F, b[1] & 0x80 != 0);
        if b[0] & 0x70 != 0 || masked != (sender == Sender::Client) {
            break;
        }
        let (len, mut at) = match b[1] & 0x7F {
            126 if b.len() >= 4 => (u64::from(u16::from_be_bytes([b[2], b[3]])), 4),
            127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().unwrap()), 10),
            126 | 127 => break,
            n => (u64::from(n), 2),
        };
        if (b[1] & 0x7F == 126 && len < 126) || (b[1] & 0x7F == 127 && len <= 0xFFFF) {
            break;
        }
        let mask = if masked {
            let Some(m) = b.get(at..at + 4) else { break };
            at += 4;
            Some([m[0], m[1], m[2], m[3]])
        } else {
            None
        };
        let control = op >= 8;
        if (control && (!fin || len > 125)) || (!control && len > MAX_PAYLOAD) {
            break;
        }
        let Some(p) = b.get(at..at + len as usize) else {
            break;
        };
        let payload: Vec<u8> = match mask {
            Some(m) => p.iter().enumerate().map(|(i, x)| x ^ m[i % 4]).collect(),
            None => p.to_vec(),
        };
        match op {
            0x1 | 0x2 => {
                if parts.is_some() {
                    break;
                }
                parts = Some((op, payload));
            }
            0x0 => match &mut parts {
                Some((_, v)) => v.extend_from_slice(&payload),
                None => break,
            },
            0x8..=0xA => {}
            _ => break,
        }
        if !control && fin {
            let (op, v) = parts.take().unwrap();
            out.push(format!(
                "{}:{}",
                if op == 1 { "Text" } else { "Binary" },
                hex(&v)
            ));
        }
        b = &b[at + len as usize..];
    }
    out
}

pub fn check(data: &[u8]) {
    let Some((&flags, stream)) = data.split_first() else {
        return;
    };
    let sender = if flags & 1 == 1 {
        Sender::Client
    } else {
        Sender::Server
    };
    let whole = run(sender, stream, &[]);
    let cut = usize::from(flags >> 1) * stream.len() / 128;
    assert_eq!(run(sender, stream, &[cut]), whole, "cut at {cut}");
    if stream.len() <= 512 {
        let every: Vec<usize> = (1..stream.len()).collect();
        assert_eq!(run(sender, stream, &every), whole, "byte by byte");
    }
    // Every message the reader completed is the reference's, in order (the reference stops at the
    // first frame it cannot take; the reader may refuse a close frame the reference passes).
    let data_msgs: Vec<&String> = whole.0.iter().filter(|e| !e.starts_with("close")).collect();
    let refs = reference(sender, stream);
    assert!(
        data_msgs.len() <= refs.len() || !whole.1,
        "messages beyond the reference"
    );
    for (a, b) in data_msgs.iter().zip(&refs) {
        assert_eq!(*a, b, "message differs from the reference");
    }
}
