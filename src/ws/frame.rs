//! WebSocket frames as they pass through the relay (RFC 6455 §5), read incrementally from whatever
//! pieces the socket returns: each frame head is checked (no reserved bits, since no extension is
//! negotiated; known opcodes; control frames short and unfragmented; masked from the client, unmasked
//! from the server; the 64-bit length with its top bit clear and minimal; a payload cap), the
//! fragmentation rules of §5.4 are followed across frames, and payload bytes are handed out as they
//! arrive, unmasked, so a caller can meter a message without holding it. Memory is fixed: at most one
//! frame head (14 bytes) is held. Nothing here does I/O; the bytes themselves are forwarded untouched by
//! the caller.

/// Which peer sent the frames: the client's must be masked, the server's must not (§5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    Client,
    Server,
}

/// Frame opcodes (§5.2); others are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn from_bits(b: u8) -> Option<Opcode> {
        Some(match b {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// Why a frame stream is refused; the session is then closed with 1002 (protocol error) or 1009
/// (too big).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// RSV1-3 set: no extension was negotiated.
    ReservedBits,
    UnknownOpcode,
    /// A control frame with more than 125 payload bytes, or without FIN.
    BadControlFrame,
    /// A client frame without a mask, or a server frame with one.
    Masking,
    /// A 16- or 64-bit length that fits a shorter form, or a 64-bit length with its top bit set.
    BadLength,
    /// A payload over the cap.
    TooLarge,
    /// A continuation frame outside a fragmented message, or a new message inside one.
    Fragmentation,
    /// A close frame whose payload is one byte, or whose code may not be sent (§7.4).
    BadClose,
}

impl FrameError {
    /// The close code the relay sends for it.
    pub fn close_code(self) -> u16 {
        match self {
            FrameError::TooLarge => 1009,
            _ => 1002,
        }
    }
}

/// What the reader found in the bytes it was fed.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// Part of a data message's payload, unmasked; `message` is its first frame's opcode (text or
    /// binary).
    Data { message: Opcode, bytes: &'a [u8] },
    /// The data message ended (its final frame's payload has all been handed out).
    MessageEnd { message: Opcode },
    /// A close frame's code (`None`: no code), once its payload is complete.
    Close { code: Option<u16> },
}

/// Longest frame head: 2 bytes, 8 of extended length, 4 of mask.
const MAX_HEAD: usize = 14;
/// Longest control payload (§5.5).
const MAX_CONTROL: u64 = 125;

/// Reads one direction of a WebSocket connection.
#[derive(Debug)]
pub struct FrameReader {
    sender: Sender,
    max_payload: u64,
    head: [u8; MAX_HEAD],
    have: usize,
    /// The frame whose payload is being read, if any.
    frame: Option<Frame>,
    /// The opcode of the data message in progress across fragments.
    message: Option<Opcode>,
    /// A close frame's payload so far (at most 125 bytes; only the first two are the code).
    close: [u8; 2],
    close_have: usize,
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    fin: bool,
    opcode: Opcode,
    mask: Option<[u8; 4]>,
    len: u64,
    /// Payload bytes consumed so far (the mask's position).
    done: u64,
}

impl FrameReader {
    pub fn new(sender: Sender, max_payload: u64) -> FrameReader {
        FrameReader {
            sender,
            max_payload,
            head: [0; MAX_HEAD],
            have: 0,
            frame: None,
            message: None,
            close: [0; 2],
            close_have: 0,
        }
    }

    /// Whether the reader is between frames (nothing of a frame has been read).
    pub fn at_boundary(&self) -> bool {
        self.frame.is_none() && self.have == 0
    }

    /// Read `input`, handing every event to `sink`. Masked payload is unmasked into `scratch` first
    /// (the caller forwards `input` itself unchanged). After an error the reader must not be fed again.
    pub fn feed(
        &mut self,
        mut input: &[u8],
        scratch: &mut Vec<u8>,
        sink: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), FrameError> {
        loop {
            let Some(mut frame) = self.frame else {
                if input.is_empty() {
                    return Ok(());
                }
                // Collect the head: first the two fixed bytes, then as many as they announce.
                let need = self.head_len();
                let take = (need - self.have).min(input.len());
                self.head[self.have..self.have + take].copy_from_slice(&input[..take]);
                self.have += take;
                input = &input[take..];
                if self.have < self.head_len() {
                    continue;
                }
                let frame = self.parse_head()?;
                self.have = 0;
                self.frame = Some(frame);
                if frame.len == 0 {
                    self.end_frame(frame, sink)?;
                }
                continue;
            };
            if input.is_empty() {
                return Ok(());
            }
            let take = usize::try_from(frame.len - frame.done)
                .unwrap_or(usize::MAX)
                .min(input.len());
            let (piece, rest) = input.split_at(take);
            input = rest;
            let bytes: &[u8] = match frame.mask {
                None => piece,
                Some(mask) => {
                    scratch.clear();
                    scratch.extend(
                        piece
                            .iter()
                            .enumerate()
                            .map(|(i, b)| b ^ mask[((frame.done + i as u64) % 4) as usize]),
                    );
                    scratch
                }
            };
            if frame.opcode == Opcode::Close {
                for &b in bytes {
                    if self.close_have < 2 {
                        self.close[self.close_have] = b;
                    }
                    self.close_have += 1;
                }
            } else if !frame.opcode.is_control() {
                let message = self.message.unwrap_or(frame.opcode);
                sink(Event::Data { message, bytes });
            }
            frame.done += take as u64;
            self.frame = Some(frame);
            if frame.done == frame.len {
                self.end_frame(frame, sink)?;
            }
        }
    }

    /// Bytes of the head being collected: 2, then what the length and mask bits announce.
    fn head_len(&self) -> usize {
        if self.have < 2 {
            return 2;
        }
        let ext = match self.head[1] & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if self.head[1] & 0x80 != 0 { 4 } else { 0 };
        2 + ext + mask
    }

    fn parse_head(&mut self) -> Result<Frame, FrameError> {
        let h = &self.head;
        if h[0] & 0x70 != 0 {
            return Err(FrameError::ReservedBits);
        }
        let fin = h[0] & 0x80 != 0;
        let opcode = Opcode::from_bits(h[0] & 0x0F).ok_or(FrameError::UnknownOpcode)?;
        let masked = h[1] & 0x80 != 0;
        if masked != (self.sender == Sender::Client) {
            return Err(FrameError::Masking);
        }
        let (len, at) = match h[1] & 0x7F {
            126 => {
                let n = u64::from(u16::from_be_bytes([h[2], h[3]]));
                if n < 126 {
                    return Err(FrameError::BadLength);
                }
                (n, 4)
            }
            127 => {
                let n = u64::from_be_bytes(h[2..10].try_into().expect("8 bytes"));
                if n >> 63 != 0 || n <= u64::from(u16::MAX) {
                    return Err(FrameError::BadLength);
                }
                (n, 10)
            }
            n => (u64::from(n), 2),
        };
        let mask = masked.then(|| h[at..at + 4].try_into().expect("4 bytes"));
        if opcode.is_control() {
            if !fin || len > MAX_CONTROL {
                return Err(FrameError::BadControlFrame);
            }
        } else if len > self.max_payload {
            return Err(FrameError::TooLarge);
        }
        match (opcode, self.message) {
            (Opcode::Continuation, None) => return Err(FrameError::Fragmentation),
            (Opcode::Text | Opcode::Binary, Some(_)) => return Err(FrameError::Fragmentation),
            (Opcode::Text | Opcode::Binary, None) => self.message = Some(opcode),
            _ => {}
        }
        if opcode == Opcode::Close {
            self.close_have = 0;
        }
        Ok(Frame {
            fin,
            opcode,
            mask,
            len,
            done: 0,
        })
    }

    fn end_frame(
        &mut self,
        frame: Frame,
        sink: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), FrameError> {
        self.frame = None;
        match frame.opcode {
            Opcode::Close => {
                let code = match self.close_have {
                    0 => None,
                    1 => return Err(FrameError::BadClose),
                    _ => {
                        let code = u16::from_be_bytes(self.close);
                        if !sendable_close_code(code) {
                            return Err(FrameError::BadClose);
                        }
                        Some(code)
                    }
                };
                sink(Event::Close { code });
            }
            Opcode::Ping | Opcode::Pong => {}
            _ if frame.fin => {
                let message = self.message.take().unwrap_or(frame.opcode);
                sink(Event::MessageEnd { message });
            }
            _ => {}
        }
        Ok(())
    }
}

/// Close codes a peer may send (§7.4.1, §7.4.2): 1000-1003, 1007-1014, and 3000-4999 for libraries and
/// applications.
pub fn sendable_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A close frame as the relay sends it to a client (unmasked, `Sender::Server`) or to a provider
/// (masked with `mask`): the code and a short reason that must carry no secret.
pub fn close_frame(code: u16, reason: &str, mask: Option<[u8; 4]>) -> Vec<u8> {
    let reason = &reason.as_bytes()[..reason.len().min(MAX_CONTROL as usize - 2)];
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    let mut out = vec![0x88, payload.len() as u8];
    match mask {
        None => out.extend_from_slice(&payload),
        Some(m) => {
            out[1] |= 0x80;
            out.extend_from_slice(&m);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as a peer would write it.
    fn frame(fin: bool, op: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = vec![(u8::from(fin) << 7) | op];
        let m = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(m | n as u8),
            n if n <= 0xFFFF => {
                out.push(m | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(m | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            None => out.extend_from_slice(payload),
            Some(k) => {
                out.extend_from_slice(&k);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
            }
        }
        out
    }

    /// Events of a whole input fed in pieces cut at `cuts`, flattened to owned values.
    fn read(sender: Sender, input: &[u8], cuts: &[usize]) -> Result<Vec<String>, FrameError> {
        let mut r = FrameReader::new(sender, 1 << 20);
        let mut scratch = Vec::new();
        let mut out: Vec<String> = Vec::new();
        let mut data: Vec<u8> = Vec::new();
        let mut at = 0;
        for &c in cuts.iter().chain(std::iter::once(&input.len())) {
            r.feed(&input[at..c], &mut scratch, &mut |e| match e {
                Event::Data { bytes, .. } => data.extend_from_slice(bytes),
                Event::MessageEnd { message } => {
                    out.push(format!("{message:?}:{}", String::from_utf8_lossy(&data)));
                    data.clear();
                }
                Event::Close { code } => out.push(format!("close:{code:?}")),
            })?;
            at = c;
        }
        Ok(out)
    }

    const MASK: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

    #[test]
    fn messages_fragments_and_control_frames_read_the_same_however_cut() {
        let mut input = frame(true, 1, b"hello", MASK);
        input.extend(frame(false, 2, b"ab", MASK));
        input.extend(frame(true, 9, b"ping", MASK)); // a control frame between fragments
        input.extend(frame(false, 0, b"cd", MASK));
        input.extend(frame(true, 0, b"", MASK));
        input.extend(frame(true, 1, &[b'x'; 300], MASK));
        input.extend(frame(true, 8, &[0x03, 0xe8, b'b', b'y'], MASK));
        let whole = read(Sender::Client, &input, &[]).unwrap();
        assert_eq!(whole[0], "Text:hello");
        assert_eq!(whole[1], "Binary:abcd");
        assert_eq!(whole[2], format!("Text:{}", "x".repeat(300)));
        assert_eq!(whole[3], "close:Some(1000)");
        for cut in 0..=input.len() {
            assert_eq!(
                read(Sender::Client, &input, &[cut]).unwrap(),
                whole,
                "cut at {cut}"
            );
        }
        let every: Vec<usize> = (1..input.len()).collect();
        assert_eq!(read(Sender::Client, &input, &every).unwrap(), whole);
    }

    #[test]
    fn server_frames_are_unmasked_and_lengths_use_every_form() {
        let big = vec![b'y'; 70_000];
        let mut input = frame(true, 1, &big, None);
        input.extend(frame(true, 1, &[b'z'; 126], None));
        let out = read(Sender::Server, &input, &[3, 9, 70_005]).unwrap();
        assert_eq!(out[0].len(), "Text:".len() + 70_000);
        assert_eq!(out[1].len(), "Text:".len() + 126);
    }

    #[test]
    fn every_broken_frame_is_refused() {
        let cases: Vec<(Sender, Vec<u8>, FrameError)> = vec![
            (
                Sender::Client,
                frame(true, 1, b"a", None),
                FrameError::Masking,
            ),
            (
                Sender::Server,
                frame(true, 1, b"a", MASK),
                FrameError::Masking,
            ),
            (Sender::Server, vec![0xC1, 0x00], FrameError::ReservedBits),
            (Sender::Server, vec![0x83, 0x00], FrameError::UnknownOpcode),
            (
                Sender::Server,
                frame(false, 9, b"", None),
                FrameError::BadControlFrame,
            ),
            (
                Sender::Server,
                frame(true, 9, &[0; 126], None),
                FrameError::BadControlFrame,
            ),
            (
                Sender::Server,
                frame(true, 0, b"a", None),
                FrameError::Fragmentation,
            ),
            (
                Sender::Server,
                [frame(false, 1, b"a", None), frame(true, 1, b"b", None)].concat(),
                FrameError::Fragmentation,
            ),
            (Sender::Server, vec![0x81, 126, 0, 5], FrameError::BadLength),
            (
                Sender::Server,
                vec![0x81, 127, 0, 0, 0, 0, 0, 0, 0xff, 0xff],
                FrameError::BadLength,
            ),
            (
                Sender::Server,
                vec![0x81, 127, 0x80, 0, 0, 0, 0, 1, 0, 0],
                FrameError::BadLength,
            ),
            (
                Sender::Server,
                vec![0x81, 127, 0, 0, 0, 0, 0, 0x20, 0, 0],
                FrameError::TooLarge,
            ),
            (
                Sender::Server,
                frame(true, 8, &[3], None),
                FrameError::BadClose,
            ),
            (
                Sender::Server,
                frame(true, 8, &[0x03, 0xed], None),
                FrameError::BadClose,
            ), // 1005
            (
                Sender::Server,
                frame(true, 8, &[0x0b, 0xb7], None),
                FrameError::BadClose,
            ), // 2999
        ];
        for (sender, input, want) in cases {
            assert_eq!(read(sender, &input, &[]), Err(want), "{input:?}");
        }
        assert_eq!(FrameError::TooLarge.close_code(), 1009);
    }

    #[test]
    fn close_frames_built_by_the_relay_read_back() {
        let f = close_frame(1008, "token budget exhausted", None);
        assert_eq!(read(Sender::Server, &f, &[]).unwrap(), ["close:Some(1008)"]);
        let f = close_frame(1001, &"x".repeat(300), MASK);
        assert_eq!(f.len(), 2 + 4 + 125);
        assert_eq!(read(Sender::Client, &f, &[]).unwrap(), ["close:Some(1001)"]);
    }
}
