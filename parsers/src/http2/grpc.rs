//! gRPC over HTTP/2 (gRPC "PROTOCOL-HTTP2" spec): `:path` splitting, `grpc-message` percent
//! decoding, and counting length-prefixed messages across DATA frames without buffering them.
//!
//! ```text
//! Length-Prefixed-Message = Compressed-Flag (1 octet, 0 or 1) Message-Length (4 octets, BE) Message
//! ```

/// Whether a request `content-type` marks a gRPC call (`application/grpc`, `application/grpc+proto`…).
pub fn is_grpc(content_type: &str) -> bool {
    content_type
        .get(..16)
        .is_some_and(|p| p.eq_ignore_ascii_case("application/grpc"))
}

/// `/pkg.Service/Method` → (`pkg.Service`, `Method`). Anything else → the path as the service.
pub fn split_path(path: &str) -> (String, String) {
    let p = path.strip_prefix('/').unwrap_or(path);
    match p.split_once('/') {
        Some((svc, m)) => (svc.to_string(), m.to_string()),
        None => (p.to_string(), String::new()),
    }
}

/// Percent-decodes `grpc-message` (invalid escapes are kept as they are).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hi = b.get(i + 1).and_then(|h| (*h as char).to_digit(16));
            let lo = b.get(i + 2).and_then(|h| (*h as char).to_digit(16));
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Counts messages in one direction of a call, fed the DATA payload in order.
#[derive(Debug, Default, Clone)]
pub struct MessageCounter {
    /// Prefix octets collected so far (0..5).
    prefix: [u8; 5],
    have: usize,
    /// Octets of the current message still to skip.
    remaining: u64,
    /// Messages whose prefix was seen.
    pub count: u32,
    /// The framing went wrong (bad flag octet, or a gap over a prefix): counting stopped.
    pub broken: bool,
}

impl MessageCounter {
    /// Walks `data`; returns false when it finds the framing broken (first time only).
    pub fn feed(&mut self, mut data: &[u8]) -> bool {
        while !self.broken && !data.is_empty() {
            if self.remaining > 0 {
                let n = (self.remaining.min(data.len() as u64)) as usize;
                self.remaining -= n as u64;
                data = data.get(n..).unwrap_or_default();
                continue;
            }
            let n = (5 - self.have).min(data.len());
            if let (Some(dst), Some(src)) =
                (self.prefix.get_mut(self.have..self.have + n), data.get(..n))
            {
                dst.copy_from_slice(src);
            }
            self.have += n;
            data = data.get(n..).unwrap_or_default();
            if self.have == 5 {
                self.have = 0;
                if self.prefix[0] > 1 {
                    self.broken = true;
                    return false;
                }
                self.count = self.count.saturating_add(1);
                self.remaining = u64::from(u32::from_be_bytes([
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                    self.prefix[4],
                ]));
            }
        }
        true
    }

    /// `n` octets were lost. Inside a message body that costs nothing; over a prefix, counting stops.
    pub fn skip(&mut self, n: u64) {
        if self.have == 0 && n <= self.remaining {
            self.remaining -= n;
        } else if n > 0 {
            self.broken = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_across_arbitrary_splits() {
        let mut body = Vec::new();
        for (flag, len) in [(0u8, 3u32), (1, 0), (0, 300)] {
            body.push(flag);
            body.extend_from_slice(&len.to_be_bytes());
            body.extend(std::iter::repeat_n(7u8, len as usize));
        }
        for split in 0..body.len() {
            let mut c = MessageCounter::default();
            c.feed(&body[..split]);
            c.feed(&body[split..]);
            assert_eq!(c.count, 3, "split {split}");
            assert!(!c.broken);
        }
        let mut c = MessageCounter::default();
        for b in &body {
            c.feed(std::slice::from_ref(b));
        }
        assert_eq!(c.count, 3);
    }

    #[test]
    fn bad_flag_and_gaps() {
        let mut c = MessageCounter::default();
        assert!(!c.feed(&[2, 0, 0, 0, 0]));
        assert!(c.broken);
        let mut c = MessageCounter::default();
        c.feed(&[0, 0, 0, 0, 10, 1]);
        c.skip(5);
        c.feed(&[1, 2, 3, 4, 0, 0, 0, 0, 0]);
        assert_eq!((c.count, c.broken), (2, false));
        c.skip(1);
        assert!(c.broken);
    }

    #[test]
    fn helpers() {
        assert!(is_grpc("application/grpc+proto"));
        assert!(is_grpc("Application/GRPC"));
        assert!(!is_grpc("application/json"));
        assert_eq!(split_path("/pkg.Svc/Do"), ("pkg.Svc".into(), "Do".into()));
        assert_eq!(split_path("weird"), ("weird".into(), String::new()));
        assert_eq!(percent_decode("a%20b%zz%4"), "a b%zz%4");
        assert_eq!(percent_decode("%E2%9C%93"), "✓");
    }
}
