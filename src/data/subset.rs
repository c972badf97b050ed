//! Sub-datasets: a contiguous range, an arbitrary index list, and a
//! deterministic stratified train/validation split (the NAS reward is
//! measured on images the candidate was not trained on).

use std::ops::{Bound, RangeBounds};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::{DataError, Dataset};

impl Dataset {
    /// The images in `range` (e.g. `..1000` for the first 1000), as a new
    /// dataset.
    ///
    /// # Panics
    /// If the range is out of bounds or decreasing, like slice indexing.
    pub fn subset(&self, range: impl RangeBounds<usize>) -> Dataset {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e + 1,
            Bound::Excluded(&e) => e,
            Bound::Unbounded => self.len(),
        };
        assert!(
            start <= end && end <= self.len(),
            "subset {start}..{end} out of bounds for a dataset of {} images",
            self.len()
        );
        let n = self.shape.numel();
        Dataset {
            name: self.name.clone(),
            shape: self.shape,
            num_classes: self.num_classes,
            images: self.images[start * n..end * n].to_vec(),
            labels: self.labels[start..end].to_vec(),
        }
    }

    /// The first `n` images (all of them if there are fewer).
    pub fn take(&self, n: usize) -> Dataset {
        self.subset(..n.min(self.len()))
    }

    /// The images at `indices`, in that order (repeats allowed).
    ///
    /// # Panics
    /// If an index is out of bounds.
    pub fn select(&self, indices: &[usize]) -> Dataset {
        let n = self.shape.numel();
        let mut images = Vec::with_capacity(indices.len() * n);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        Dataset {
            name: self.name.clone(),
            shape: self.shape,
            num_classes: self.num_classes,
            images,
            labels,
        }
    }

    /// Split into `(train, validation)` with `round(frac * count)` images of
    /// every class in validation, chosen by a shuffle seeded with `seed`.
    ///
    /// Stratified so that a small validation set still has every class in
    /// its dataset proportion; both parts keep the original image order, and
    /// the same `(frac, seed)` always gives the same split.
    pub fn split_off_validation(
        &self,
        frac: f64,
        seed: u64,
    ) -> Result<(Dataset, Dataset), DataError> {
        if !(0.0..=1.0).contains(&frac) {
            return Err(DataError::InvalidArgument(format!(
                "validation fraction {frac} is outside [0, 1]"
            )));
        }
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); self.num_classes];
        for (i, &l) in self.labels.iter().enumerate() {
            by_class[usize::from(l)].push(i);
        }
        let mut is_val = vec![false; self.len()];
        for idx in &mut by_class {
            idx.shuffle(&mut rng);
            let k = (frac * idx.len() as f64).round() as usize;
            for &i in &idx[..k.min(idx.len())] {
                is_val[i] = true;
            }
        }
        let (val, train): (Vec<usize>, Vec<usize>) = (0..self.len()).partition(|&i| is_val[i]);
        let mut val_set = self.select(&val);
        val_set.name = format!("{}-validation", self.name);
        Ok((self.select(&train), val_set))
    }
}

#[cfg(test)]
mod tests {
    use crate::data::Dataset;
    use crate::model::Shape;

    fn ramp(n: usize) -> Dataset {
        Dataset {
            name: "r".into(),
            shape: Shape::new(1, 1, 2),
            num_classes: 3,
            images: (0..2 * n).map(|i| i as f32).collect(),
            labels: (0..n).map(|i| (i % 3) as u8).collect(),
        }
    }

    #[test]
    fn subset_forms() {
        let d = ramp(10);
        assert_eq!(d.subset(2..4).images, vec![4.0, 5.0, 6.0, 7.0]);
        assert_eq!(d.subset(..=0).labels, vec![0]);
        assert_eq!(d.subset(8..).len(), 2);
        assert_eq!(d.take(100).len(), 10);
        assert_eq!(d.select(&[3, 3]).labels, vec![0, 0]);
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn subset_out_of_bounds_panics() {
        ramp(3).subset(1..5);
    }

    #[test]
    fn validation_split_is_stratified_and_deterministic() {
        let d = ramp(300);
        let (tr, va) = d.split_off_validation(0.1, 7).unwrap();
        assert_eq!(va.class_counts(), vec![10, 10, 10]);
        assert_eq!(tr.len(), 270);
        let (tr2, va2) = d.split_off_validation(0.1, 7).unwrap();
        assert_eq!(va.images, va2.images);
        assert_eq!(tr.labels, tr2.labels);
        let (_, va3) = d.split_off_validation(0.1, 8).unwrap();
        assert_ne!(va.images, va3.images);
        // Disjoint and covering: every pixel value appears exactly once.
        let mut all: Vec<f32> = tr.images.iter().chain(&va.images).copied().collect();
        all.sort_by(f32::total_cmp);
        assert_eq!(all, d.images);
        assert!(d.split_off_validation(1.5, 0).is_err());
        assert!(d.split_off_validation(f64::NAN, 0).is_err());
    }
}
