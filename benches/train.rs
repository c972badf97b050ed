//! Training-step throughput (images/s) of the shipped ResNet-20 on 1x28x28
//! Fashion-MNIST images at batch 128: float, QAT, and QAT + FTT (a second,
//! faulty forward and backward under MiBB p=1e-4 feature faults or sa:1e-3
//! weight faults). One step = forward, backward, SGD update.
//!
//! Run: `cargo bench --bench train`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ftnas::data::{self, Split};
use ftnas::fault::FaultModel;
use ftnas::model::load_model;
use ftnas::train::{Ftt, Params, TrainConfig, Trainer};

const BATCH: usize = 128;

fn bench_train(c: &mut Criterion) {
    let train = data::load(None, Split::Train)
        .expect("Fashion-MNIST (apt package fashion-mnist) is needed")
        .take(BATCH);
    let graph = load_model(std::path::Path::new("models/resnet20.toml"), train.shape).unwrap();
    let mut group = c.benchmark_group("train_step_resnet20_b128");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(BATCH as u64));
    let variants: [(&str, bool, Option<FaultModel>); 4] = [
        ("float", false, None),
        ("qat", true, None),
        (
            "qat_ftt_mibb_1e-4",
            true,
            Some(FaultModel::parse_feature_flag("mibb:1e-4").unwrap()),
        ),
        (
            "qat_ftt_sa_1e-3",
            true,
            Some(FaultModel::parse_weight_flag("sa:1e-3").unwrap()),
        ),
    ];
    for (name, qat, fm) in variants {
        let mut cfg = TrainConfig::new(1, BATCH);
        cfg.qat = qat;
        cfg.qat_warmup_steps = 0;
        cfg.ftt = fm.map(|model| Ftt { model, alpha: 0.5 });
        let mut t = Trainer::new(&graph, cfg, Params::init(&graph, 0)).unwrap();
        t.calibrate(&train.images);
        group.bench_function(name, |b| {
            b.iter(|| t.train_step(&train.images, &train.labels))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_train);
criterion_main!(benches);
