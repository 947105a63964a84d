//! Injected randomness: masking keys and handshake nonces.
//!
//! The core never reaches for randomness on its own; a client [`crate::Connection`] and a
//! [`crate::handshake::ClientHandshake`] take a [`RandomSource`]. [`OsRandom`] (feature
//! `os-random`, on by default) draws from the operating system; tests inject a fixed source.

/// A source of unpredictable bytes (RFC 6455 section 5.3 asks for "a strong source of
/// entropy" for masking keys).
pub trait RandomSource: Send {
    /// Fills `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]);
}

/// Random bytes from the operating system (getrandom), fetched 256 bytes at a time so that
/// a client sending many small frames does not pay a system call per masking key.
#[cfg(feature = "os-random")]
#[derive(Clone)]
pub struct OsRandom {
    pool: [u8; 256],
    used: usize,
}

#[cfg(feature = "os-random")]
impl OsRandom {
    /// An empty pool; the first [`RandomSource::fill`] refills it.
    pub fn new() -> Self {
        OsRandom {
            pool: [0; 256],
            used: 256,
        }
    }
}

#[cfg(feature = "os-random")]
impl Default for OsRandom {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "os-random")]
impl std::fmt::Debug for OsRandom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print pooled key material.
        f.debug_struct("OsRandom").finish_non_exhaustive()
    }
}

#[cfg(feature = "os-random")]
impl RandomSource for OsRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        for byte in buf.iter_mut() {
            if self.used == self.pool.len() {
                // The OS generator failing is not something a WebSocket can recover from
                // or should paper over with weak keys.
                getrandom::getrandom(&mut self.pool).expect("the OS random source failed");
                self.used = 0;
            }
            *byte = self.pool[self.used];
            self.used += 1;
        }
    }
}

/// A deterministic source for tests and fuzzing: repeats the given bytes. Never use it on
/// a real connection: masking keys must be unpredictable.
#[derive(Clone, Debug)]
pub struct FixedRandom {
    bytes: Vec<u8>,
    at: usize,
}

impl FixedRandom {
    /// A source that cycles through `bytes` (which must not be empty).
    pub fn new(bytes: &[u8]) -> Self {
        assert!(!bytes.is_empty(), "FixedRandom needs at least one byte");
        FixedRandom {
            bytes: bytes.to_vec(),
            at: 0,
        }
    }
}

impl RandomSource for FixedRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        for byte in buf.iter_mut() {
            *byte = self.bytes[self.at];
            self.at = (self.at + 1) % self.bytes.len();
        }
    }
}

#[cfg(all(test, feature = "os-random"))]
mod tests {
    use super::*;

    #[test]
    fn os_random_refills_its_pool() {
        let mut rng = OsRandom::new();
        let mut a = [0u8; 300];
        rng.fill(&mut a);
        let mut b = [0u8; 300];
        rng.fill(&mut b);
        // 2400 random bits colliding would mean a broken source.
        assert_ne!(a, b);
        assert!(a.iter().any(|&x| x != 0));
    }
}
