//! Loss, optimizer and learning-rate schedules: softmax cross-entropy, SGD
//! with momentum and (coupled, PyTorch-style) weight decay, global-norm
//! gradient clipping, cosine or step decay.

use super::params::Params;

/// Mean softmax cross-entropy of `logits` (N x classes) against `labels`,
/// its gradient with respect to the logits multiplied by `scale`, and the
/// number of correct argmax predictions.
pub fn cross_entropy(logits: &[f32], labels: &[u8], scale: f32) -> (f64, Vec<f32>, usize) {
    let n = labels.len();
    let k = logits.len() / n.max(1);
    let mut grad = vec![0.0f32; logits.len()];
    let mut loss = 0.0f64;
    let mut correct = 0;
    for (i, &y) in labels.iter().enumerate() {
        let row = &logits[i * k..(i + 1) * k];
        let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let sum: f64 = row.iter().map(|&v| ((v - max) as f64).exp()).sum();
        loss += sum.ln() - (row[y as usize] - max) as f64;
        let best = (0..k).fold(0, |b, j| if row[j] > row[b] { j } else { b });
        correct += usize::from(best == y as usize);
        for j in 0..k {
            let p = ((row[j] - max) as f64).exp() / sum;
            let t = if j == y as usize { 1.0 } else { 0.0 };
            grad[i * k + j] = ((p - t) / n as f64) as f32 * scale;
        }
    }
    (loss / n.max(1) as f64, grad, correct)
}

/// Learning-rate schedule over the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// `lr * (1 + cos(pi * step / total)) / 2`, per step.
    Cosine,
    /// `lr`, times 0.1 after 50% and again after 75% of the epochs.
    Step,
}

impl Schedule {
    /// Learning rate at `step` of `total` steps (`epoch` of `epochs`).
    pub fn lr(self, base: f64, step: usize, total: usize, epoch: usize, epochs: usize) -> f64 {
        match self {
            Schedule::Cosine => {
                base * 0.5
                    * (1.0 + (std::f64::consts::PI * step as f64 / total.max(1) as f64).cos())
            }
            Schedule::Step => {
                let f = epoch as f64 / epochs.max(1) as f64;
                base * if f >= 0.75 {
                    0.01
                } else if f >= 0.5 {
                    0.1
                } else {
                    1.0
                }
            }
        }
    }
}

/// SGD with momentum: `g += wd * w; v = mu * v + g; w -= lr * v`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sgd {
    pub momentum: f32,
    pub weight_decay: f32,
    /// Clip the global L2 norm of the gradient to this (0 = off).
    pub clip: f32,
    /// One buffer per parameter tensor.
    pub velocity: Vec<Vec<f32>>,
}

impl Sgd {
    pub fn new(params: &Params, momentum: f32, weight_decay: f32, clip: f32) -> Sgd {
        Sgd {
            momentum,
            weight_decay,
            clip,
            velocity: params.zeros_like(),
        }
    }

    /// One update; returns the gradient norm before clipping.
    pub fn step(&mut self, params: &mut Params, grads: &[Vec<f32>], lr: f32) -> f32 {
        let norm = grads
            .iter()
            .zip(&params.trainable)
            .filter(|(_, &t)| t)
            .flat_map(|(g, _)| g.iter())
            .map(|&g| g as f64 * g as f64)
            .sum::<f64>()
            .sqrt() as f32;
        let scale = if self.clip > 0.0 && norm > self.clip {
            self.clip / norm
        } else {
            1.0
        };
        for (((data, vel), grad), &trainable) in params
            .data
            .iter_mut()
            .zip(&mut self.velocity)
            .zip(grads)
            .zip(&params.trainable)
        {
            if !trainable {
                continue;
            }
            for ((w, v), &g) in data.iter_mut().zip(vel.iter_mut()).zip(grad) {
                let g = g * scale + self.weight_decay * *w;
                *v = self.momentum * *v + g;
                *w -= lr * *v;
            }
        }
        norm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_of_uniform_logits_is_ln_k() {
        let (loss, grad, _) = cross_entropy(&[0.0; 20], &[3, 7], 1.0);
        assert!((loss - 10f64.ln()).abs() < 1e-9);
        assert!((grad[3] - (0.1 - 1.0) / 2.0).abs() < 1e-6);
        assert!((grad[0] - 0.05).abs() < 1e-6);
    }

    #[test]
    fn schedules() {
        assert_eq!(Schedule::Cosine.lr(0.1, 0, 100, 0, 10), 0.1);
        assert!(Schedule::Cosine.lr(0.1, 100, 100, 9, 10).abs() < 1e-12);
        assert_eq!(Schedule::Step.lr(1.0, 0, 0, 5, 10), 0.1);
        assert_eq!(Schedule::Step.lr(1.0, 0, 0, 8, 10), 0.01);
    }
}
