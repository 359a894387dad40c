//! A gzip-compressed tar archive (POSIX ustar) of a few files, built in memory: the
//! support bundle's `-o FILE.tar.gz` form. Regular files only, one directory level per
//! path component, names up to 100 bytes (the bundle's names are short).

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;

const BLOCK: usize = 512;

/// Pure: the ustar header of a regular file (mode 0644) of `size` bytes.
pub fn header(name: &str, size: u64, mtime: u64) -> Result<[u8; BLOCK], String> {
    let mut h = [0u8; BLOCK];
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > 100 {
        return Err(format!("file name {name:?} must be 1 to 100 bytes long"));
    }
    h[..bytes.len()].copy_from_slice(bytes);
    let octal = |field: &mut [u8], v: u64| {
        let text = format!("{v:0width$o}", width = field.len() - 1);
        field[..text.len()].copy_from_slice(text.as_bytes());
    };
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    if size >= 0o77777777777 {
        return Err(format!(
            "{name} is too large for the archive ({size} bytes)"
        ));
    }
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field as eight blanks.
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
    let text = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(text.as_bytes());
    Ok(h)
}

/// Pure: the archive of `files` (path inside the archive, content), all under `root/`.
pub fn tar_gz(root: &str, files: &[(String, Vec<u8>)], mtime: u64) -> Result<Vec<u8>, String> {
    let mut tar = Vec::new();
    for (name, body) in files {
        let path = format!("{root}/{name}");
        tar.extend_from_slice(&header(&path, body.len() as u64, mtime)?);
        tar.extend_from_slice(body);
        let pad = (BLOCK - body.len() % BLOCK) % BLOCK;
        tar.extend(std::iter::repeat_n(0u8, pad));
    }
    // Two zero blocks end the archive.
    tar.extend(std::iter::repeat_n(0u8, 2 * BLOCK));
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&tar).map_err(|e| e.to_string())?;
    gz.finish().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::io::Read;

    #[test]
    fn header_has_a_valid_checksum_and_size() {
        let h = header("bundle/README.txt", 1234, 1_700_000_000).unwrap();
        let stored = std::str::from_utf8(&h[148..154]).unwrap();
        let mut blanked = h;
        blanked[148..156].copy_from_slice(b"        ");
        let sum: u64 = blanked.iter().map(|b| u64::from(*b)).sum();
        assert_eq!(u64::from_str_radix(stored, 8).unwrap(), sum);
        let size = std::str::from_utf8(&h[124..135]).unwrap();
        assert_eq!(u64::from_str_radix(size, 8).unwrap(), 1234);
        assert_eq!(&h[257..262], b"ustar");
        assert!(header(&"x".repeat(101), 1, 0).is_err());
    }

    #[test]
    fn archive_holds_each_file_on_block_boundaries() {
        let files = vec![
            ("a.txt".to_string(), b"hello".to_vec()),
            ("logs/b.log".to_string(), vec![b'x'; 600]),
        ];
        let gz = tar_gz("bundle", &files, 0).unwrap();
        let mut tar = Vec::new();
        GzDecoder::new(gz.as_slice()).read_to_end(&mut tar).unwrap();
        assert_eq!(tar.len() % BLOCK, 0);
        assert!(tar.starts_with(b"bundle/a.txt\0"));
        assert_eq!(&tar[BLOCK..BLOCK + 5], b"hello");
        assert!(tar[2 * BLOCK..].starts_with(b"bundle/logs/b.log\0"));
        // header + 1 block, header + 2 blocks, 2 end blocks.
        assert_eq!(tar.len(), (2 + 3 + 2) * BLOCK);
    }
}
