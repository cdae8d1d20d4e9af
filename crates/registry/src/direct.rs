//! Appending to a file (a registry upload, a pulled blob) with direct I/O (`O_DIRECT`) where the filesystem allows:
//! a gigabyte blob then goes from the network to the disk without being copied into the
//! page cache, which on this class of machine costs as much CPU as TLS and hashing
//! together. Whole aligned megabytes are written direct; the unaligned tail of a request
//! is written through the page cache. Filesystems without direct I/O (tmpfs) get plain
//! writes.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};

use std::path::Path;

/// Direct I/O wants buffers, offsets and lengths aligned to the device's block size.
const ALIGN: usize = 4096;

#[derive(Clone, Copy, bytemuck::Zeroable, bytemuck::Pod)]
#[repr(C, align(4096))]
struct Block([u8; ALIGN]);

/// Writes appended data at `offset` onward.
pub struct Appender {
    buffered: File,
    direct: Option<File>,
    offset: u64,
    /// The batch buffer, grown a block at a time as data comes (a slow writer holds
    /// little memory), up to `batch_blocks`.
    blocks: Vec<Block>,
    batch_blocks: usize,
    filled: usize,
}

impl Appender {
    /// Append to `path`, which holds `offset` bytes; batches of `batch` bytes (a multiple
    /// of 4096) are written at once.
    pub fn open(path: &Path, offset: u64, batch: usize) -> io::Result<Appender> {
        let buffered = std::fs::OpenOptions::new().write(true).open(path)?;
        let direct = if offset.is_multiple_of(ALIGN as u64) {
            std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_DIRECT)
                .open(path)
                .ok()
        } else {
            None
        };
        Ok(Appender {
            buffered,
            direct,
            offset,
            blocks: Vec::new(),
            batch_blocks: batch.div_ceil(ALIGN).max(1),
            filled: 0,
        })
    }

    /// The bytes of buffer this appender holds now.
    pub fn buffer_bytes(&self) -> usize {
        self.blocks.capacity() * ALIGN
    }

    fn buf(&mut self) -> &mut [u8] {
        bytemuck::cast_slice_mut(&mut self.blocks)
    }

    pub fn push(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let want = (self.filled + data.len())
                .div_ceil(ALIGN)
                .min(self.batch_blocks);
            if want > self.blocks.len() {
                self.blocks.resize(want, Block([0; ALIGN]));
            }
            let filled = self.filled;
            let buf = self.buf();
            let n = (buf.len() - filled).min(data.len());
            buf[filled..filled + n].copy_from_slice(&data[..n]);
            self.filled += n;
            data = &data[n..];
            if self.filled == self.batch_blocks * ALIGN {
                self.flush_full()?;
            }
        }
        Ok(())
    }

    fn flush_full(&mut self) -> io::Result<()> {
        let len = self.filled;
        let offset = self.offset;
        let bytes: &[u8] = bytemuck::cast_slice(&self.blocks);
        let direct_done = match &self.direct {
            Some(f) => match f.write_all_at(&bytes[..len], offset) {
                Ok(()) => true,
                // Refused after all (some filesystems accept the flag and not the write).
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => false,
                Err(e) => return Err(e),
            },
            None => false,
        };
        if !direct_done {
            self.direct = None;
            self.buffered.write_all_at(&bytes[..len], offset)?;
        }
        self.offset += len as u64;
        self.filled = 0;
        Ok(())
    }

    /// Write what is left (through the page cache: it may be unaligned); the new size.
    /// The data is not yet durable: fsync the file for that.
    pub fn finish(mut self) -> io::Result<u64> {
        if self.filled > 0 {
            let len = self.filled;
            let offset = self.offset;
            let bytes: &[u8] = bytemuck::cast_slice(&self.blocks);
            self.buffered.write_all_at(&bytes[..len], offset)?;
            self.offset += len as u64;
        }
        Ok(self.offset)
    }
}

impl io::Write for Appender {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.push(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_whatever_the_sizes_and_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"").unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        // Aligned start, odd chunk sizes, a tail; then an unaligned start (page cache only).
        let mut a = Appender::open(&path, 0, 1 << 20).unwrap();
        for c in data[..2_500_003].chunks(65_537) {
            a.push(c).unwrap();
        }
        assert_eq!(a.finish().unwrap(), 2_500_003);
        let mut b = Appender::open(&path, 2_500_003, 8192).unwrap();
        io::Write::write_all(&mut b, &data[2_500_003..]).unwrap();
        assert_eq!(b.finish().unwrap(), data.len() as u64);
        assert_eq!(std::fs::read(&path).unwrap(), data);
    }
}
