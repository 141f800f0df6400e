//! Runlists ("mapping pairs"): the clusters of a non-resident attribute.

/// A run of clusters: `len` clusters from virtual cluster `vcn`, stored from logical cluster
/// `lcn`, or sparse (`None`: reads as zeros, nothing stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Run {
    pub vcn: u64,
    pub lcn: Option<u64>,
    pub len: u64,
}

impl Run {
    /// The first cluster after the run.
    pub fn end(&self) -> u64 {
        self.vcn + self.len
    }
}

/// The highest virtual cluster accepted (2^40: 512 TiB in 512-byte clusters), so that
/// cluster numbers times the largest cluster (2 MiB), and their sums, fit in a `u64`.
pub(super) const MAX_VCN: u64 = 1 << 40;

/// Decodes the runlist `bytes` of an attribute instance that starts at `start_vcn`, on a
/// volume of `clusters` clusters. The LCN deltas restart from 0 in every instance.
///
/// # Errors
///
/// A malformed pair, a run of length 0, or a run outside the volume (as text for the caller
/// to place).
pub(super) fn decode(bytes: &[u8], start_vcn: u64, clusters: u64) -> Result<Vec<Run>, String> {
    let mut runs: Vec<Run> = Vec::new();
    let mut vcn = start_vcn;
    let mut lcn: i64 = 0;
    let mut p = 0usize;
    loop {
        let Some(&header) = bytes.get(p) else {
            return Err("runlist has no end mark".into());
        };
        if header == 0 {
            break;
        }
        let len_bytes = usize::from(header & 0x0F);
        let off_bytes = usize::from(header >> 4);
        if len_bytes == 0 || len_bytes > 8 || off_bytes > 8 {
            return Err(format!("runlist header byte {header:#04x}"));
        }
        let field = |start: usize, n: usize| -> Option<&[u8]> { bytes.get(start..start + n) };
        let Some(len_field) = field(p + 1, len_bytes) else {
            return Err("runlist pair runs past the attribute".into());
        };
        let len = len_field
            .iter()
            .rev()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        if len == 0 || len > MAX_VCN {
            return Err(format!("run length {len}"));
        }
        let run_lcn = if off_bytes == 0 {
            None
        } else {
            let Some(off_field) = field(p + 1 + len_bytes, off_bytes) else {
                return Err("runlist pair runs past the attribute".into());
            };
            // Sign-extended little-endian delta.
            let mut delta: i64 = if off_field[off_bytes - 1] & 0x80 != 0 {
                -1
            } else {
                0
            };
            for &b in off_field.iter().rev() {
                delta = (delta << 8) | i64::from(b);
            }
            lcn = lcn
                .checked_add(delta)
                .ok_or_else(|| format!("run delta {delta} overflows"))?;
            let start = u64::try_from(lcn).map_err(|_| format!("negative cluster number {lcn}"))?;
            if start.checked_add(len).is_none_or(|end| end > clusters) {
                return Err(format!(
                    "run of {len} clusters at cluster {start} passes the volume's {clusters} clusters"
                ));
            }
            Some(start)
        };
        if vcn.saturating_add(len) > MAX_VCN {
            return Err(format!("virtual cluster {vcn} + {len} out of range"));
        }
        // Adjacent runs that continue each other are merged, so big files give few extents.
        match runs.last_mut() {
            Some(last)
                if match (last.lcn, run_lcn) {
                    (None, None) => true,
                    (Some(a), Some(b)) => a + last.len == b,
                    _ => false,
                } =>
            {
                last.len += len;
            }
            _ => runs.push(Run {
                vcn,
                lcn: run_lcn,
                len,
            }),
        }
        vcn += len;
        p += 1 + len_bytes + off_bytes;
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_relative_and_sparse_runs() {
        // 0x10 clusters at 0x1000; 8 sparse; 0x20 clusters at 0x1000 - 0x100; end.
        // The third pair's delta is the two bytes 0x00, 0xFF: -256, sign-extended.
        let bytes = [
            0x21, 0x10, 0x00, 0x10, //
            0x01, 0x08, //
            0x21, 0x20, 0x00, 0xFF, //
            0x00,
        ];
        let runs = decode(&bytes, 0, 1 << 20).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            runs,
            vec![
                Run {
                    vcn: 0,
                    lcn: Some(0x1000),
                    len: 0x10
                },
                Run {
                    vcn: 0x10,
                    lcn: None,
                    len: 8
                },
                Run {
                    vcn: 0x18,
                    lcn: Some(0x1000 - 0x100),
                    len: 0x20
                },
            ]
        );
    }

    #[test]
    fn merges_contiguous_runs_and_keeps_the_start_vcn() {
        let bytes = [0x11, 0x04, 0x10, 0x11, 0x04, 0x04, 0x00];
        let runs = decode(&bytes, 100, 1000).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            runs,
            vec![Run {
                vcn: 100,
                lcn: Some(0x10),
                len: 8
            }]
        );
    }

    #[test]
    fn rejects_malformed_runlists() {
        // No end mark.
        assert!(decode(&[0x11, 0x04, 0x10], 0, 1000).is_err());
        // Pair truncated.
        assert!(decode(&[0x21, 0x04], 0, 1000).is_err());
        // Zero length.
        assert!(decode(&[0x11, 0x00, 0x10, 0x00], 0, 1000).is_err());
        // Past the volume.
        assert!(decode(&[0x11, 0x10, 0x7F, 0x00], 0, 0x80).is_err());
        // Negative cluster.
        assert!(decode(&[0x11, 0x10, 0xF0, 0x00], 0, 1000).is_err());
        // Nine-byte length.
        assert!(decode(&[0x09, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0], 0, 1000).is_err());
    }
}
