//! A gzip-compressed tar archive (POSIX ustar) of a few files, built in memory: the
//! support bundle's and the evidence bundle's `-o FILE.tar.gz` form. Regular files only;
//! a path longer than 100 bytes is split at a `/` into ustar's prefix (up to 155 bytes)
//! and name fields.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;

const BLOCK: usize = 512;

/// Pure: the ustar header of a regular file (mode 0644) of `size` bytes.
pub fn header(name: &str, size: u64, mtime: u64) -> Result<[u8; BLOCK], String> {
    let mut h = [0u8; BLOCK];
    let (prefix, rest) = split_path(name)
        .ok_or_else(|| format!("file path {name:?} is too long for the archive"))?;
    h[..rest.len()].copy_from_slice(rest.as_bytes());
    h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
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

/// Pure: a path as ustar's (prefix, name): the name alone when it fits in 100 bytes,
/// else split at the first `/` that leaves a name of at most 100 bytes, when the prefix
/// before it has at most 155. `None` when no split fits (or the path is empty).
pub fn split_path(path: &str) -> Option<(&str, &str)> {
    if path.is_empty() {
        return None;
    }
    if path.len() <= 100 {
        return Some(("", path));
    }
    path.match_indices('/')
        .map(|(i, _)| (&path[..i], &path[i + 1..]))
        .find(|(p, n)| p.len() <= 155 && !n.is_empty() && n.len() <= 100)
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
        assert!(header("", 1, 0).is_err());
    }

    #[test]
    fn long_paths_use_the_prefix_field() {
        let root = "r".repeat(60);
        let path = format!("{root}/account_info/administrator_authorisation/README.txt");
        assert!(path.len() > 100);
        assert_eq!(
            split_path(&path),
            Some((
                root.as_str(),
                "account_info/administrator_authorisation/README.txt"
            ))
        );
        let h = header(&path, 1, 0).unwrap();
        let field = |r: std::ops::Range<usize>| {
            std::str::from_utf8(&h[r])
                .unwrap()
                .trim_end_matches('\0')
                .to_string()
        };
        assert_eq!(field(345..500), root);
        assert_eq!(
            field(0..100),
            "account_info/administrator_authorisation/README.txt"
        );
        assert_eq!(split_path("short/name"), Some(("", "short/name")));
        assert_eq!(split_path(&"y".repeat(101)), None);
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
