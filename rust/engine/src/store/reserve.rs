//! Space kept free on the data partition. A layer being unpacked stops with a clear error before the
//! partition falls below its reserve, instead of filling it (the engine, its logs and the apps on a device
//! all live there): a decompression bomb or an image too big for the card fails early, and the device goes on.

use std::io::{self, Read};
use std::os::fd::AsFd;

/// How often (bytes of layer tar) free space is looked at.
const CHECK_EVERY: u64 = 8 << 20;
/// The reserve: 2 % of the partition, at most this.
const MAX_RESERVE: u64 = 256 << 20;

/// Reads `inner`, failing once the file system of `dir` has less free space than its reserve.
pub struct SpaceGuard<R> {
    inner: R,
    dir: std::fs::File,
    since_check: u64,
}

impl<R: Read> SpaceGuard<R> {
    pub fn new(inner: R, dir: std::fs::File) -> Self {
        SpaceGuard { inner, dir, since_check: 0 }
    }

    // statvfs's fields are 32-bit on 32-bit ARM: the conversions are real there.
    #[allow(clippy::useless_conversion)]
    fn check(&self) -> io::Result<()> {
        let Ok(st) = nix::sys::statvfs::fstatvfs(self.dir.as_fd()) else { return Ok(()) };
        let block = u64::from(st.fragment_size());
        let (total, avail) = (u64::from(st.blocks()) * block, u64::from(st.blocks_available()) * block);
        let reserve = (total / 50).min(MAX_RESERVE);
        if avail < reserve {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!(
                    "the data partition is nearly full ({} MiB free, {} MiB kept in reserve): the layer is too big for it, or a decompression bomb",
                    avail >> 20,
                    reserve >> 20
                ),
            ));
        }
        Ok(())
    }
}

impl<R: Read> Read for SpaceGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.since_check += n as u64;
        if self.since_check >= CHECK_EVERY {
            self.since_check = 0;
            self.check()?;
        }
        Ok(n)
    }
}
