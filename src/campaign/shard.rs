//! Shards: `i/n` splits a campaign's chips into `n` disjoint parts that
//! can run on different machines; chip `c` belongs to shard `c % n`.
//! Round-robin rather than contiguous ranges so every shard gets the same
//! mix of chips and takes about the same time; the choice cannot change a
//! result, because every chip's randomness depends only on its index.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::CampaignError;

/// Shard `index` of `count` (`0 <= index < count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// The whole campaign (`0/1`).
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    pub fn new(index: u64, count: u64) -> Result<Shard, CampaignError> {
        let text = format!("{index}/{count}");
        check(index, count, &text)
    }

    /// Whether chip `chip` belongs to this shard.
    pub fn owns(&self, chip: u64) -> bool {
        chip % self.count == self.index
    }

    /// The chips of `0..chips` that belong to this shard, ascending.
    pub fn chips(&self, chips: u64) -> impl Iterator<Item = u64> + '_ {
        (self.index..chips).step_by(self.count as usize)
    }

    /// Number of chips of `0..chips` in this shard.
    pub fn len(&self, chips: u64) -> u64 {
        chips.saturating_sub(self.index).div_ceil(self.count)
    }

    pub fn is_whole(&self) -> bool {
        self.count == 1
    }
}

fn check(index: u64, count: u64, text: &str) -> Result<Shard, CampaignError> {
    let err = |message: &str| CampaignError::Shard {
        text: text.to_string(),
        message: message.to_string(),
    };
    if count == 0 {
        return Err(err("the shard count n must be at least 1"));
    }
    if index >= count {
        return Err(err(
            "the shard index i must be below the count n (0-based: 0/4 .. 3/4)",
        ));
    }
    if usize::try_from(count).is_err() {
        return Err(err("the shard count is too large"));
    }
    Ok(Shard { index, count })
}

impl FromStr for Shard {
    type Err = CampaignError;
    fn from_str(s: &str) -> Result<Shard, CampaignError> {
        let err = || CampaignError::Shard {
            text: s.to_string(),
            message: "expected `i/n` with whole numbers, e.g. `0/4`".into(),
        };
        let (i, n) = s.trim().split_once('/').ok_or_else(err)?;
        let i: u64 = i.trim().parse().map_err(|_| err())?;
        let n: u64 = n.trim().parse().map_err(|_| err())?;
        check(i, n, s)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Serialize for Shard {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Shard {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Shard, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_rejects() {
        let s: Shard = "2/5".parse().unwrap();
        assert_eq!((s.index, s.count), (2, 5));
        assert_eq!(s.to_string(), "2/5");
        for bad in ["5/5", "1/0", "a/3", "3", "-1/3", "1/2/3"] {
            let e = bad.parse::<Shard>().unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    proptest! {
        #[test]
        fn shards_partition_the_chips(chips in 0u64..200, count in 1u64..12) {
            let mut seen = vec![0u32; chips as usize];
            for index in 0..count {
                let s = Shard::new(index, count).unwrap();
                let mine: Vec<u64> = s.chips(chips).collect();
                prop_assert_eq!(mine.len() as u64, s.len(chips));
                for c in mine {
                    prop_assert!(s.owns(c));
                    seen[c as usize] += 1;
                }
            }
            prop_assert!(seen.iter().all(|&k| k == 1));
        }
    }
}
