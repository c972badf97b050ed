//! FTT-NAS search throughput on Fashion-MNIST with the `ftnas search`
//! defaults (feature-fault op set, 5 cells x 4 nodes, C = 8, batch 64,
//! MiBB p = 1e-4): one super-net FTT step on a random genotype (images/s),
//! scoring one candidate on 200 reward images (clean + faulty forward),
//! and one LSTM controller sample + REINFORCE update (hidden 100).
//!
//! Run: `cargo bench --bench search`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ftnas::data::{self, Split};
use ftnas::fault::FaultModel;
use ftnas::search::driver::SearchData;
use ftnas::search::lstm::{RlConfig, RlController};
use ftnas::search::supernet::super_train_config;
use ftnas::search::{OpSet, Search, SearchConfig, SearchSpace, SuperNet};
use ftnas::train::Ftt;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

const BATCH: usize = 64;

fn space() -> SearchSpace {
    let mut s = SearchSpace::paper(OpSet::Feature);
    s.layers = 5;
    s.init_channels = 8;
    s
}

fn bench_search(c: &mut Criterion) {
    // as `ftnas search` does (main.rs)
    ftnas::malloc::keep_freed_memory();
    let full = data::load(None, Split::Train)
        .expect("Fashion-MNIST (apt package dataset-fashion-mnist) is needed")
        .take(1000);
    let faults = FaultModel::parse_feature_flag("mibb:1e-4").unwrap();
    let sp = space();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);

    let mut group = c.benchmark_group("search");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(15));

    // super-net FTT step (QAT active: warm-up 0)
    let mut cfg = SearchConfig::new(sp.clone(), faults.clone(), 1);
    cfg.train.qat_warmup_steps = 0;
    let mut tcfg = super_train_config(&cfg.train);
    tcfg.ftt = Some(Ftt {
        model: faults.clone(),
        alpha: 0.5,
    });
    let numel = full.shape.numel();
    let images = &full.images[..BATCH * numel];
    let labels = &full.labels[..BATCH];
    let mut net = SuperNet::new(0);
    let mut step = 0;
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("supernet_ftt_step_b64", |b| {
        b.iter(|| {
            let g = sp.random(&mut rng);
            let graph = sp.spec(&g).build(full.shape).unwrap();
            net.train_step(&sp, &graph, &g, &tcfg, step, 1000, images, labels)
                .unwrap();
            step += 1;
        })
    });

    // candidate score on 200 reward images
    let (train, reward) = full.split_off_validation(0.2, 0).unwrap();
    let data = SearchData {
        calib: train.images[..128 * numel].to_vec(),
        train,
        reward,
    };
    let mut search = Search::new(cfg, &data, None).unwrap();
    group.throughput(Throughput::Elements(data.reward.len() as u64));
    group.bench_function("score_candidate_200", |b| {
        b.iter(|| {
            let g = sp.random(&mut rng);
            search.score(&g, 0).unwrap()
        })
    });

    // LSTM controller: sample + update
    let mut ctrl = RlController::new(&sp, RlConfig::paper(), &mut rng).unwrap();
    group.throughput(Throughput::Elements(1));
    group.bench_function("lstm_sample_update_h100", |b| {
        b.iter(|| {
            let a = ctrl.sample(&sp, &mut rng);
            ctrl.update(&sp, &a, 0.5)
        })
    });
    group.finish();
}

criterion_group!(benches, bench_search);
criterion_main!(benches);
