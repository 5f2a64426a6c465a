//! A fixed-size scrollback ring buffer.

/// Keeps the last `cap` bytes written to it.
#[derive(Debug)]
pub struct Scrollback {
    buf: Vec<u8>,
    cap: usize,
    /// Index where the next byte goes once the buffer is full.
    head: usize,
}

/// Scrollback size of every session: 64 KiB.
pub const SCROLLBACK_BYTES: usize = 64 * 1024;

impl Scrollback {
    /// An empty ring of `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Scrollback {
            buf: Vec::new(),
            cap,
            head: 0,
        }
    }

    /// Appends bytes, dropping the oldest beyond capacity.
    pub fn push(&mut self, mut data: &[u8]) {
        if data.len() >= self.cap {
            data = &data[data.len() - self.cap..];
            self.buf.clear();
            self.buf.extend_from_slice(data);
            self.head = 0;
            return;
        }
        if self.buf.len() < self.cap {
            let room = self.cap - self.buf.len();
            let n = room.min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        for &b in data {
            self.buf[self.head] = b;
            self.head = (self.head + 1) % self.cap;
        }
    }

    /// The retained bytes, oldest first.
    pub fn contents(&self) -> Vec<u8> {
        if self.buf.len() < self.cap {
            return self.buf.clone();
        }
        let mut out = Vec::with_capacity(self.cap);
        out.extend_from_slice(&self.buf[self.head..]);
        out.extend_from_slice(&self.buf[..self.head]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_last_bytes_in_order() {
        let mut r = Scrollback::new(8);
        r.push(b"abc");
        assert_eq!(r.contents(), b"abc");
        r.push(b"defgh");
        assert_eq!(r.contents(), b"abcdefgh");
        r.push(b"ij");
        assert_eq!(r.contents(), b"cdefghij");
        r.push(b"0123456789");
        assert_eq!(r.contents(), b"23456789");
        r.push(b"x");
        assert_eq!(r.contents(), b"3456789x");
    }

    #[test]
    fn matches_naive_model() {
        let mut r = Scrollback::new(100);
        let mut model = Vec::new();
        for i in 0..500u32 {
            let chunk: Vec<u8> = (0..(i % 37)).map(|j| (i + j) as u8).collect();
            r.push(&chunk);
            model.extend_from_slice(&chunk);
            let start = model.len().saturating_sub(100);
            assert_eq!(r.contents(), &model[start..]);
        }
    }
}
