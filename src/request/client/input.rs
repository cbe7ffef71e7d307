//! The bytes read from the client and not consumed yet: one vector and a read cursor, like
//! `BytesMut::advance`. Consuming a request head or a piece of body moves the cursor instead of
//! moving the bytes after it to the front; the unread rest is moved only when the next read needs
//! room, and an emptied buffer simply starts over. Reads it as a slice through `Deref`.

use std::ops::Deref;

/// Unconsumed client input: `bytes[start..]`.
pub(super) struct Input {
    bytes: Vec<u8>,
    start: usize,
}

impl Input {
    pub(super) fn with_capacity(n: usize) -> Input {
        Input {
            bytes: Vec::with_capacity(n),
            start: 0,
        }
    }

    /// Drop the first `n` unread bytes (at most all of them).
    pub(super) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.bytes.len());
        if self.start == self.bytes.len() {
            self.bytes.clear();
            self.start = 0;
        }
    }

    /// The vector to read into, with room for at least `n` more bytes: the consumed prefix is
    /// given back first when there is not room enough behind the unread bytes.
    pub(super) fn spare(&mut self, n: usize) -> &mut Vec<u8> {
        if self.start > 0 && self.bytes.capacity() - self.bytes.len() < n {
            self.bytes.drain(..self.start);
            self.start = 0;
        }
        self.bytes.reserve(n);
        &mut self.bytes
    }
}

impl Deref for Input {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes[self.start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consuming_moves_the_cursor_and_reads_append_behind_it() {
        let mut input = Input::with_capacity(8);
        input.spare(8).extend_from_slice(b"GET /a\r\n");
        input.consume(4);
        assert_eq!(&*input, b"/a\r\n");
        // Room is left behind the unread bytes: nothing moves.
        input.spare(0).extend_from_slice(b"x");
        assert_eq!(&*input, b"/a\r\nx");
        // Not enough room: the consumed prefix is given back, the unread bytes are kept in order.
        let cap = input.bytes.capacity();
        input.spare(cap).extend_from_slice(b"yz");
        assert_eq!(input.start, 0);
        assert_eq!(&*input, b"/a\r\nxyz");
        input.consume(100);
        assert!(input.is_empty());
        assert_eq!((input.start, input.bytes.len()), (0, 0));
    }
}
