//! The evaluation pipeline shared by `ftnas infer` and `ftnas eval`: model
//! file + safetensors weights + calibration images -> quantized model; engine
//! runs over a test set in chunks (reporting progress); accuracy; and one
//! faulty chip (weight faults drawn once for the chip, feature faults drawn
//! per forward with the chip as trial index).

use std::path::Path;

use super::EvalError;
use crate::data::Dataset;
use crate::engine::{Engine, EngineError, FeatureFaults};
use crate::fault::{FaultError, FaultModel};
use crate::fixed::Datapath;
use crate::model::{self, Graph};
use crate::quant::{self, QModel};

/// A model file with its weights, quantized for one datapath.
#[derive(Debug, Clone)]
pub struct Quantized {
    pub graph: Graph,
    pub qmodel: QModel,
    /// Number of training images used to calibrate activation formats.
    pub calib_images: usize,
}

/// Build `model_path` for the images of `calib_set`, read its weights from
/// `weights_path` and quantize it to `datapath`, calibrating activation
/// formats on the first `calib` images of `calib_set` (at least one, at most
/// all). Errors name the file that is wrong.
pub fn load_quantized(
    model_path: &Path,
    weights_path: &Path,
    calib_set: &Dataset,
    calib: usize,
    datapath: Datapath,
) -> Result<Quantized, EvalError> {
    let graph = model::load_model(model_path, calib_set.shape)?;
    let classes = graph.output_shape().numel();
    if classes < calib_set.num_classes {
        return Err(EvalError::ModelData {
            path: model_path.to_path_buf(),
            msg: format!(
                "the model has {classes} outputs but the dataset has {} classes",
                calib_set.num_classes
            ),
        });
    }
    let weights = model::load_weights(weights_path, &graph)?;
    let calib_images = calib.clamp(1, calib_set.len().max(1));
    let numel = calib_set.shape.numel();
    let images = &calib_set.images[..(calib_images * numel).min(calib_set.images.len())];
    let qmodel =
        quant::quantize(&graph, &weights, datapath, images).map_err(|source| EvalError::Quant {
            path: model_path.to_path_buf(),
            source,
        })?;
    Ok(Quantized {
        graph,
        qmodel,
        calib_images,
    })
}

/// Images to evaluate on (f32, row-major, image `i` has dataset index `i`
/// for its fault streams) and their labels.
#[derive(Debug, Clone, Copy)]
pub struct TestSet<'a> {
    pub images: &'a [f32],
    pub labels: &'a [u8],
}

impl TestSet<'_> {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// The first `n` images of `set` (all when `n` is None or larger); an error
/// when that leaves none.
pub fn first_images(set: &Dataset, n: Option<usize>) -> Result<TestSet<'_>, EvalError> {
    let n = n.unwrap_or(set.len()).min(set.len());
    if n == 0 {
        return Err(EvalError::Invalid(format!(
            "the {} test split is empty (or --images 0)",
            set.name
        )));
    }
    Ok(TestSet {
        images: &set.images[..n * set.shape.numel()],
        labels: &set.labels[..n],
    })
}

/// Check that `faults` fits `qmodel`: per-bit parameters match its datapath
/// and every layer the fault model names is one of its conv/linear layers.
pub fn check_fault_model(faults: &FaultModel, qmodel: &QModel) -> Result<(), FaultError> {
    faults.check_bits(qmodel.datapath.act_bits, qmodel.datapath.weight_bits)?;
    let names: Vec<&str> = qmodel.mac_layers().map(|l| l.name.as_str()).collect();
    faults.check_layer_names(&names)
}

/// Fraction of images whose argmax logit is the label.
pub fn accuracy(logits: &[Vec<i32>], labels: &[u8]) -> f64 {
    let hits = logits
        .iter()
        .zip(labels)
        .filter(|(l, &y)| quant::argmax(l) == y as usize)
        .count();
    hits as f64 / labels.len().max(1) as f64
}

/// Images per engine call: bounds the memory of one call and sets how often
/// progress is reported.
const CHUNK: usize = 512;

/// Run `engine` over `images` (image `i` has dataset index `i` for its fault
/// streams) in chunks, calling `progress` with the number of images done
/// after each chunk.
pub fn run_chunked(
    engine: &dyn Engine,
    model: &QModel,
    images: &[f32],
    faults: Option<FeatureFaults<'_>>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<Vec<i32>>, EngineError> {
    let n = model.input_shape().numel();
    let mut out = Vec::with_capacity(images.len() / n.max(1));
    for (k, chunk) in images.chunks(CHUNK * n).enumerate() {
        out.extend(engine.run(model, chunk, (k * CHUNK) as u64, faults)?);
        progress((chunk.len() / n) as u64);
    }
    Ok(out)
}

/// Accuracy of chip `chip` under `faults`: its weight faults are drawn once
/// (stream `(seed, chip)`), whether or not the model marks them persistent,
/// and its feature faults are drawn per image with `chip` as trial index.
pub fn chip_accuracy(
    engine: &dyn Engine,
    clean: &QModel,
    faults: &FaultModel,
    seed: u64,
    chip: u64,
    test: TestSet<'_>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<f64, EngineError> {
    let corrupted;
    let model = match faults.weight() {
        Some(w) => {
            corrupted = clean.with_weight_faults(w, seed, chip);
            &corrupted
        }
        None => clean,
    };
    let feature = faults.feature().map(|injector| FeatureFaults {
        injector,
        seed,
        trial: chip,
    });
    let logits = run_chunked(engine, model, test.images, feature, progress)?;
    Ok(accuracy(&logits, test.labels))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::engine::FastEngine;
    use crate::model::{Shape, Weights};

    /// A conv + linear model on 1x4x4 images with random weights (layers
    /// `stage1.0.conv` and `classifier`), and a
    /// labelling of 60 images by its own clean prediction (so clean
    /// accuracy is 1 and faults can only lower it).
    pub(crate) fn self_labelled() -> (QModel, Vec<f32>, Vec<u8>) {
        let g = crate::model::vgg::vgg(&[vec![4]], 10, Shape::new(1, 4, 4)).unwrap();
        let w = Weights::random(&g, 11);
        let images: Vec<f32> = (0..16 * 60)
            .map(|i| ((i * 7919) % 101) as f32 / 101.0)
            .collect();
        let q = quant::quantize(&g, &w, Datapath::default(), &images).unwrap();
        let labels = FastEngine
            .run(&q, &images, 0, None)
            .unwrap()
            .iter()
            .map(|l| quant::argmax(l) as u8)
            .collect();
        (q, images, labels)
    }

    #[test]
    fn accuracy_counts_argmax_hits() {
        let logits = vec![vec![1, 5, 2], vec![3, 0, 0], vec![0, 0, 9]];
        assert_eq!(accuracy(&logits, &[1, 1, 2]), 2.0 / 3.0);
        assert_eq!(accuracy(&[], &[]), 0.0);
    }

    #[test]
    fn chunked_runs_report_every_image_and_match_one_call() {
        let (q, images, _) = self_labelled();
        let done = std::sync::atomic::AtomicU64::new(0);
        let add = |k: u64| {
            done.fetch_add(k, std::sync::atomic::Ordering::Relaxed);
        };
        let chunked = run_chunked(&FastEngine, &q, &images, None, &add).unwrap();
        assert_eq!(done.into_inner(), 60);
        assert_eq!(chunked, FastEngine.run(&q, &images, 0, None).unwrap());
    }

    #[test]
    fn a_chip_is_its_seed_and_index() {
        let (q, images, labels) = self_labelled();
        let fm = FaultModel::parse_weight_flag("sa:0.3:all").unwrap();
        let none = |_| {};
        let test = TestSet {
            images: &images,
            labels: &labels,
        };
        let acc = |chip| chip_accuracy(&FastEngine, &q, &fm, 9, chip, test, &none);
        assert_eq!(acc(1).unwrap(), acc(1).unwrap());
        let clean = accuracy(&FastEngine.run(&q, &images, 0, None).unwrap(), &labels);
        let off = FaultModel::none();
        let a = chip_accuracy(&FastEngine, &q, &off, 9, 1, test, &none).unwrap();
        assert_eq!(a, clean);
    }

    #[test]
    fn fault_models_naming_unknown_layers_are_rejected() {
        let (q, _, _) = self_labelled();
        let fm = FaultModel::parse_str(
            "[feature]\nkind = \"mibb\"\np = 1e-3\nlayers = [\"classifier\"]\n",
            "ok.toml",
        )
        .unwrap();
        check_fault_model(&fm, &q).unwrap();
        let fm = FaultModel::parse_str(
            "[feature]\nkind = \"mibb\"\np = 1e-3\nlayers = [\"conv9\"]\n",
            "bad.toml",
        )
        .unwrap();
        let e = check_fault_model(&fm, &q).unwrap_err().to_string();
        assert!(e.contains("conv9") && e.contains("classifier"), "{e}");
    }
}
