//! Segment files: `audit-<first seq, 20 digits>.jsonl`, one record per line, in seq order.
//!
//! A log directory holds the segments, `HEAD`, and nothing the log needs besides. Segments
//! sort by name in seq order; the log appends to the last one and starts a new one when it
//! passes its size limit.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

const PREFIX: &str = "audit-";
const SUFFIX: &str = ".jsonl";

/// The file name of the segment whose first record is `first_seq`.
pub fn segment_name(first_seq: u64) -> String {
    format!("{PREFIX}{first_seq:020}{SUFFIX}")
}

/// A segment file found in a log directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    /// The seq its name says it starts at.
    pub first_seq: u64,
    /// Its path.
    pub path: PathBuf,
}

impl SegmentFile {
    /// The file name, for messages.
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// The segments in `dir`, in seq order. Other files are ignored.
pub fn list_segments(dir: &Path) -> io::Result<Vec<SegmentFile>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(number) = name
            .strip_prefix(PREFIX)
            .and_then(|n| n.strip_suffix(SUFFIX))
        else {
            continue;
        };
        if number.len() != 20 || !number.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(first_seq) = number.parse() else {
            continue;
        };
        segments.push(SegmentFile {
            first_seq,
            path: entry.path(),
        });
    }
    segments.sort_by_key(|s| s.first_seq);
    Ok(segments)
}

/// Reads a segment line by line (without newlines), with 1-based line numbers.
#[derive(Debug)]
pub struct LineReader {
    reader: BufReader<File>,
    line_no: u64,
    buf: Vec<u8>,
}

/// One line of a segment.
#[derive(Debug)]
pub struct Line<'a> {
    /// 1-based line number.
    pub number: u64,
    /// The bytes, without the newline.
    pub bytes: &'a [u8],
    /// Whether the line ended with a newline (only the last line of a file can lack one).
    pub complete: bool,
}

impl LineReader {
    /// Opens `path` for reading.
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(Self {
            reader: BufReader::with_capacity(256 * 1024, File::open(path)?),
            line_no: 0,
            buf: Vec::with_capacity(1024),
        })
    }

    /// The next line, or `None` at the end of the file.
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.buf.clear();
        let n = self.reader.read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(None);
        }
        self.line_no += 1;
        let complete = self.buf.last() == Some(&b'\n');
        if complete {
            self.buf.pop();
        }
        Ok(Some(Line {
            number: self.line_no,
            bytes: &self.buf,
            complete,
        }))
    }
}

/// The end of a segment as found when resuming: its last complete line and what follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    /// The last complete line (without its newline), if any.
    pub last_line: Option<Vec<u8>>,
    /// The length of the file up to and including the last complete line's newline.
    pub good_len: u64,
    /// The file's length; more than `good_len` when the last line is torn.
    pub file_len: u64,
}

/// Reads the end of `path` backwards until the last complete line is found. Trailing bytes
/// after the last newline (a line torn by a crash, or zeros a file system left after one)
/// are reported through `good_len < file_len`.
pub fn read_tail(path: &Path) -> io::Result<Tail> {
    const CHUNK: u64 = 64 * 1024;
    let mut file = File::open(path)?;
    let file_len = file.metadata()?.len();
    // Find the last newline: everything after it is torn.
    let mut end = file_len;
    let mut good_len = 0;
    let mut chunk = Vec::new();
    'search: while end > 0 {
        let start = end.saturating_sub(CHUNK);
        read_range(&mut file, start, end, &mut chunk)?;
        for (i, b) in chunk.iter().enumerate().rev() {
            if *b == b'\n' {
                good_len = start + i as u64 + 1;
                break 'search;
            }
        }
        end = start;
    }
    if good_len == 0 {
        return Ok(Tail {
            last_line: None,
            good_len: 0,
            file_len,
        });
    }
    // Find the newline before it: the last complete line lies between.
    let line_end = good_len - 1;
    let mut end = line_end;
    let mut line_start = 0;
    'start: while end > 0 {
        let start = end.saturating_sub(CHUNK);
        read_range(&mut file, start, end, &mut chunk)?;
        for (i, b) in chunk.iter().enumerate().rev() {
            if *b == b'\n' {
                line_start = start + i as u64 + 1;
                break 'start;
            }
        }
        end = start;
    }
    let mut line = Vec::new();
    read_range(&mut file, line_start, line_end, &mut line)?;
    Ok(Tail {
        last_line: Some(line),
        good_len,
        file_len,
    })
}

fn read_range(file: &mut File, start: u64, end: u64, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    file.seek(SeekFrom::Start(start))?;
    file.take(end - start).read_to_end(buf)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn names_sort_in_seq_order() {
        assert_eq!(segment_name(42), "audit-00000000000000000042.jsonl");
        let dir = tempfile::tempdir().unwrap();
        for seq in [1000, 2, 30] {
            std::fs::write(dir.path().join(segment_name(seq)), b"").unwrap();
        }
        std::fs::write(dir.path().join("HEAD"), b"").unwrap();
        std::fs::write(dir.path().join("audit-12.jsonl"), b"").unwrap();
        let seqs: Vec<u64> = list_segments(dir.path())
            .unwrap()
            .iter()
            .map(|s| s.first_seq)
            .collect();
        assert_eq!(seqs, [2, 30, 1000]);
    }

    #[test]
    fn tail_finds_the_last_complete_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let long = "x".repeat(100_000);
        std::fs::write(&path, format!("a\n{long}\ntorn")).unwrap();
        let tail = read_tail(&path).unwrap();
        assert_eq!(tail.last_line.as_deref(), Some(long.as_bytes()));
        assert_eq!(tail.good_len, 2 + 100_001);
        assert_eq!(tail.file_len, tail.good_len + 4);

        std::fs::write(&path, b"only\n").unwrap();
        let tail = read_tail(&path).unwrap();
        assert_eq!(tail.last_line.as_deref(), Some(&b"only"[..]));
        assert_eq!(tail.good_len, tail.file_len);

        std::fs::write(&path, b"torn").unwrap();
        let tail = read_tail(&path).unwrap();
        assert_eq!(tail.last_line, None);
        assert_eq!((tail.good_len, tail.file_len), (0, 4));
    }
}
