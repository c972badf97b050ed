//! Fault-model files and CLI shorthands: the shipped examples load, save
//! round-trips, and every kind of bad input gives an error naming the file,
//! the line and the key (never a panic).

use std::path::{Path, PathBuf};

use ftnas::fault::{
    AdSaf, FaultError, FaultModel, FaultSpec, FeatureFault, FeatureSection, HitSign, LayerOverride,
    LayerSelection, Mibb, OutputHit, PerBit, Sa1Sign, ShareUnit, SharedStuck, StuckAt,
    StuckBuffers, StuckCells, StuckDensity, StuckMacs, WeightFault, WeightSection,
};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/faults")
}

fn parse(text: &str) -> Result<FaultModel, FaultError> {
    FaultModel::parse_str(text, "bad.toml")
}

/// Parse `text`, expect a failure, return the message.
fn parse_err(text: &str) -> String {
    match parse(text) {
        Ok(m) => panic!("expected an error, parsed {:?}", m.spec()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn shipped_examples_load() {
    let mut n = 0;
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let m = FaultModel::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                m.feature().is_some() || m.weight().is_some(),
                "{} has no faults",
                path.display()
            );
            m.check_bits(8, 8).unwrap();
            n += 1;
        }
    }
    assert!(n >= 5, "only {n} examples");
}

#[test]
fn mibb_example_is_the_paper_model() {
    let m = FaultModel::load(&examples().join("mibb-1e-4.toml")).unwrap();
    let f = m.spec().feature.as_ref().unwrap();
    assert_eq!(f.fault, FeatureFault::Mibb(Mibb { p: 1e-4 }));
    assert_eq!(f.layers, LayerSelection::Conv);
    assert!(m.weight().is_none());
}

#[test]
fn adsaf_example_and_defaults() {
    let m = FaultModel::load(&examples().join("adsaf-0.08.toml")).unwrap();
    let w = m.spec().weight.as_ref().unwrap();
    assert_eq!(
        w.fault,
        WeightFault::AdSaf(AdSaf {
            p: 0.08,
            sa1_fraction: 0.163,
            sa1_sign: Sa1Sign::Random
        })
    );
    assert!(m.weight_persistent());
    // Defaults: sa1_fraction 0.163, conv layers only.
    let m = parse("[weight]\nkind = \"adsaf\"\np = 0.08\n").unwrap();
    let w = m.spec().weight.as_ref().unwrap();
    assert_eq!(w.layers, LayerSelection::Conv);
    match &w.fault {
        WeightFault::AdSaf(a) => assert_eq!(a.sa1_fraction, 0.163),
        other => panic!("{other:?}"),
    }
    // stuck_at defaults to all layers; a missing p1 is 0.
    let m = parse("[weight]\nkind = \"stuck_at\"\np0 = 1e-3\n").unwrap();
    let w = m.spec().weight.as_ref().unwrap();
    assert_eq!(w.layers, LayerSelection::All);
    assert_eq!(
        w.fault,
        WeightFault::StuckAt(StuckAt {
            p0: PerBit::Uniform(1e-3),
            p1: PerBit::Uniform(0.0),
            shared: None,
        })
    );
}

#[test]
fn per_layer_example_has_overrides() {
    let m = FaultModel::load(&examples().join("per-layer-example.toml")).unwrap();
    let s = m.spec();
    assert_eq!(s.layers.len(), 3);
    let stem = &s.layers[0];
    assert_eq!(stem.name, "stem");
    match stem.feature.as_ref().unwrap() {
        FeatureFault::OutputHit(h) => {
            assert_eq!(h.sign, HitSign::Flip);
            assert_eq!(h.bit_weights.len(), 8);
            assert_eq!(h.multiplicity, vec![0.9, 0.1]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.layers[2].feature, Some(FeatureFault::Off));
    assert!(m.check_bits(8, 8).is_ok());
    let e = m.check_bits(4, 8).unwrap_err().to_string();
    assert!(e.contains("bit_weights") && e.contains("stem"), "{e}");
    let e = m.check_bits(8, 6).unwrap_err().to_string();
    assert!(e.contains("p0") && e.contains("conv2"), "{e}");
}

fn rich_spec() -> FaultSpec {
    FaultSpec {
        description: Some("round trip \"quoted\"".into()),
        feature: Some(FeatureSection {
            fault: FeatureFault::Mibb(Mibb { p: 1.2345e-7 }),
            layers: LayerSelection::Names(vec!["a".into(), "b.c".into()]),
        }),
        weight: Some(WeightSection {
            fault: WeightFault::AdSaf(AdSaf {
                p: 0.08,
                sa1_fraction: 0.3,
                sa1_sign: Sa1Sign::Own,
            }),
            layers: LayerSelection::All,
            persistent: false,
        }),
        layers: vec![
            LayerOverride {
                name: "a".into(),
                feature: Some(FeatureFault::OutputHit(OutputHit {
                    p_out: 1.0 / 3.0,
                    bit_weights: vec![0.1, 0.2, 0.3, 0.4],
                    sign: HitSign::Random,
                    multiplicity: vec![0.75, 0.25],
                    up: vec![vec![0.0, 0.0, 0.25, 1.0, 0.5, 0.5, 0.75, 0.125]; 4],
                    stream: None,
                })),
                weight: Some(WeightFault::StuckAt(StuckAt {
                    p0: PerBit::Bits(vec![0.0, 1e-3, 2e-3, 3e-3]),
                    p1: PerBit::Bits(vec![1e-9, 0.0, 0.5, 0.0]),
                    shared: None,
                })),
                input_flip: 1.25e-7,
                filter_flip: 6.5e-8,
                stored_flip: 3.0e-9,
            },
            LayerOverride {
                name: "fc".into(),
                feature: Some(FeatureFault::Off),
                weight: Some(WeightFault::Off),
                ..LayerOverride::default()
            },
            LayerOverride {
                name: "only_buffers".into(),
                stored_flip: 0.25,
                ..LayerOverride::default()
            },
        ],
        stuck_cells: StuckBuffers {
            ifmap: Some(StuckCells {
                words: 16384,
                p0: 2e-5,
                p1: 3.5e-5,
            }),
            ofmap: None,
        },
        stuck_macs: Some(StuckMacs {
            grid: ftnas::fault::MacGrid::WeightStationary,
            rows: 16,
            cols: 12,
            density: [
                StuckDensity { p0: 1e-5, p1: 0.0 },
                StuckDensity { p0: 0.0, p1: 0.0 },
                StuckDensity {
                    p0: 2.5e-6,
                    p1: 7e-6,
                },
                StuckDensity { p0: 0.0, p1: 2e-5 },
            ],
        }),
    }
}

/// A bit-serial SIP grid (`dataflow = "bit-serial"` with its filter rows
/// and bits per cycle) is written and read back exactly.
#[test]
fn bitserial_stuck_sips_round_trip() {
    let spec = FaultSpec {
        stuck_macs: Some(StuckMacs {
            grid: ftnas::fault::MacGrid::BitSerial {
                filter_rows: 256,
                bits_per_cycle: 2,
                serial_weights: true,
                run_time_precision: true,
            },
            rows: 16,
            cols: 16,
            density: [
                StuckDensity { p0: 1e-5, p1: 2e-5 },
                StuckDensity::default(),
                StuckDensity::default(),
                StuckDensity { p0: 0.0, p1: 3e-6 },
            ],
        }),
        ..FaultSpec::default()
    };
    let m = FaultModel::from_spec(spec).unwrap();
    let text = m.to_toml_string();
    assert!(text.contains("dataflow = \"bit-serial\"") && text.contains("filter_rows = 256"));
    let back = FaultModel::parse_str(&text, "sips.toml").unwrap();
    assert_eq!(back.spec(), m.spec());
    assert!(back
        .describe()
        .contains("16 windows x 16 lanes, 256 filter rows"));
}

#[test]
fn save_then_load_round_trips_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("derived.toml");
    let m = FaultModel::from_spec(rich_spec()).unwrap();
    m.save(&path).unwrap();
    let back = FaultModel::load(&path).unwrap();
    assert_eq!(back.spec(), m.spec());
    assert!(!back.weight_persistent());
    let d = back.describe();
    assert!(
        d.contains("stuck feature-buffer cells")
            && d.contains("stuck MAC-unit bits (16x12 WS array)"),
        "{d}"
    );
    // No temp file left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    // Overwriting an existing file works too.
    FaultModel::none().save(&path).unwrap();
    let none = FaultModel::load(&path).unwrap();
    assert!(none.feature().is_none() && none.weight().is_none());
}

#[test]
fn save_creates_missing_folders_and_errors_name_the_path() {
    // Like every result file, a saved model gets its folders created.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/m.toml");
    FaultModel::none().save(&path).unwrap();
    assert!(FaultModel::load(&path).is_ok());
    // A path whose parent is a file cannot be written; the error names it.
    let blocked = path.join("m.toml");
    let e = FaultModel::none().save(&blocked).unwrap_err().to_string();
    assert!(e.contains("m.toml"), "{e}");
}

#[test]
fn load_missing_file_names_it() {
    let e = FaultModel::load(Path::new("/nonexistent/fm.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/fm.toml"), "{e}");
}

#[test]
fn from_spec_rejects_broken_rules() {
    let mut s = rich_spec();
    s.layers[0].weight = Some(WeightFault::StuckAt(StuckAt {
        p0: PerBit::Uniform(0.7),
        p1: PerBit::Uniform(0.7),
        shared: None,
    }));
    let e = FaultModel::from_spec(s).unwrap_err().to_string();
    assert!(
        e.contains("layer[0].weight.p1") && e.contains("p0 + p1"),
        "{e}"
    );
    let mut s = rich_spec();
    s.layers[1].name = "a".into();
    let e = FaultModel::from_spec(s).unwrap_err().to_string();
    assert!(e.contains("duplicate"), "{e}");
}

/// `shared` register bits parse, and a file needs no independent part.
#[test]
fn shared_register_bits_parse() {
    let m = parse(
        "[weight]\nkind = \"stuck_at\"\nshared = { p0 = 2e-4, p1 = 3e-4, filters = 256, reduction = 16, per = \"channel\" }\n",
    )
    .unwrap();
    let w = m.spec().weight.as_ref().unwrap();
    assert_eq!(
        w.fault,
        WeightFault::StuckAt(StuckAt {
            p0: PerBit::Uniform(0.0),
            p1: PerBit::Uniform(0.0),
            shared: Some(SharedStuck {
                p0: 2e-4,
                p1: 3e-4,
                filters: 256,
                reduction: 16,
                per: ShareUnit::Channel,
            }),
        })
    );
    let back = parse(&m.to_toml_string()).unwrap();
    assert_eq!(back.spec(), m.spec());
    assert!(m.describe().contains("shared"), "{}", m.describe());
}

#[test]
fn bad_files_name_file_line_and_key() {
    // (text, expected substrings)
    let cases: &[(&str, &[&str])] = &[
        // shared register bits: bad unit, empty register file, broken sum,
        // unknown key
        (
            "[weight]\nkind = \"stuck_at\"\nshared = { p1 = 1e-3, filters = 4, reduction = 2, per = \"lane\" }\n",
            &["bad.toml:3:", "weight.shared.per", "lane", "\"term\" or \"channel\""],
        ),
        (
            "[weight]\nkind = \"stuck_at\"\np0 = 1e-3\nshared = { p1 = 1e-3, filters = 0, reduction = 2, per = \"term\" }\n",
            &["bad.toml:4:", "weight.shared.filters", "at least 1"],
        ),
        (
            "[[layer]]\nname = \"c\"\n[layer.weight]\nkind = \"stuck_at\"\nshared = { p0 = 0.6, p1 = 0.6, filters = 4, reduction = 2, per = \"term\" }\n",
            &["bad.toml:5:", "layer[0].weight.shared.p1", "p0 + p1"],
        ),
        (
            "[weight]\nkind = \"stuck_at\"\nshared = { p1 = 1e-3, filters = 4, reduction = 2, per = \"term\", lanes = 3 }\n",
            &["bad.toml", "lanes", "line 3"],
        ),
        (
            "[weight]\nkind = \"adsaf\"\np = 0.1\nshared = { p1 = 1e-3, filters = 4, reduction = 2, per = \"term\" }\n",
            &["bad.toml:4:", "weight.shared", "not a parameter of kind `adsaf`"],
        ),
        // `up`: one row per bit, 2 * bits classes per row, and only with
        // a random sign
        (
            "[feature]\nkind = \"output_hit\"\np_out = 0.1\nbit_weights = [0.5, 0.5]\nup = [[0.5, 0.5, 0.5, 0.5]]\n",
            &["bad.toml:5:", "feature.up", "one row per bit"],
        ),
        (
            "[feature]\nkind = \"output_hit\"\np_out = 0.1\nbit_weights = [0.5, 0.5]\nup = [[0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5]]\n",
            &["bad.toml:5:", "feature.up", "row 0", "class"],
        ),
        (
            "[feature]\nkind = \"output_hit\"\np_out = 0.1\nbit_weights = [0.5, 0.5]\nsign = \"flip\"\nup = [[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5]]\n",
            &["bad.toml:6:", "feature.up", "random"],
        ),
        // unknown key (deny_unknown_fields), reported by toml with its line
        (
            "[feature]\nkind = \"mibb\"\np = 1e-4\nrate = 3\n",
            &["bad.toml", "rate", "line 4"],
        ),
        // unknown top-level section
        ("[features]\nkind = \"mibb\"\n", &["bad.toml", "features"]),
        // probability out of range
        (
            "[feature]\nkind = \"mibb\"\np = 1.5\n",
            &["bad.toml:3:", "feature.p", "[0, 1]"],
        ),
        // wrong type
        (
            "[feature]\nkind = \"mibb\"\np = \"high\"\n",
            &["bad.toml", "line 3"],
        ),
        // unknown kind
        (
            "[feature]\nkind = \"gauss\"\np = 0.1\n",
            &["bad.toml:2:", "feature.kind", "gauss", "mibb"],
        ),
        // parameter of another kind
        (
            "[feature]\nkind = \"mibb\"\np = 0.1\np_out = 0.2\n",
            &["bad.toml:4:", "feature.p_out", "not a parameter of kind `mibb`"],
        ),
        // missing parameter
        ("[feature]\nkind = \"bitflip\"\n", &["bad.toml:2:", "feature.p", "needs"]),
        // bit_weights must sum to 1
        (
            "[feature]\nkind = \"output_hit\"\np_out = 0.1\nbit_weights = [0.5, 0.6]\n",
            &["bad.toml:4:", "feature.bit_weights", "sum to 1"],
        ),
        // bad sign
        (
            "[feature]\nkind = \"output_hit\"\np_out = 0.1\nbit_weights = [1.0]\nsign = \"up\"\n",
            &["bad.toml:5:", "feature.sign", "flip"],
        ),
        // bad layer selection
        (
            "[feature]\nkind = \"mibb\"\np = 0.1\nlayers = \"linear\"\n",
            &["bad.toml:4:", "feature.layers", "conv"],
        ),
        ("[feature]\nkind = \"mibb\"\np = 0.1\nlayers = []\n", &["feature.layers", "empty"]),
        // p0 + p1 > 1
        (
            "[weight]\nkind = \"stuck_at\"\np0 = 0.6\np1 = 0.6\n",
            &["bad.toml:4:", "weight.p1", "p0 + p1"],
        ),
        // per-bit lists of different lengths
        (
            "[weight]\nkind = \"stuck_at\"\np0 = [0.1, 0.1]\np1 = [0.1]\n",
            &["bad.toml:4:", "weight.p1", "entries"],
        ),
        // per-bit entry out of range
        (
            "[weight]\nkind = \"stuck_at\"\np0 = [0.1, -0.1]\n",
            &["bad.toml:3:", "weight.p0", "bit 1"],
        ),
        // non-numeric per-bit entry
        (
            "[weight]\nkind = \"stuck_at\"\np0 = [0.1, \"x\"]\n",
            &["bad.toml:3:", "weight.p0", "entry 1"],
        ),
        // stuck_at without probabilities
        ("[weight]\nkind = \"stuck_at\"\n", &["weight.p0", "needs"]),
        // adsaf fraction out of range
        (
            "[weight]\nkind = \"adsaf\"\np = 0.08\nsa1_fraction = 2\n",
            &["bad.toml:4:", "weight.sa1_fraction"],
        ),
        (
            "[weight]\nkind = \"adsaf\"\np = 0.08\nsa1_sign = \"left\"\n",
            &["bad.toml:4:", "weight.sa1_sign", "own"],
        ),
        (
            "[weight]\nkind = \"adsaf\"\np = 0.08\npersistent = \"yes\"\n",
            &["bad.toml", "line 4"],
        ),
        // duplicate layers
        (
            "[[layer]]\nname = \"c1\"\nfeature = { kind = \"none\" }\n\n[[layer]]\nname = \"c1\"\nweight = { kind = \"none\" }\n",
            &["bad.toml:6:", "layer[1].name", "duplicate"],
        ),
        // layer entry without a model
        ("[[layer]]\nname = \"c1\"\n", &["bad.toml:1:", "layer[0]", "feature"]),
        // selection keys inside a layer entry
        (
            "[[layer]]\nname = \"c1\"\nweight = { kind = \"adsaf\", p = 0.1, persistent = false }\n",
            &["bad.toml:3:", "layer[0].weight.persistent"],
        ),
        (
            "[[layer]]\nname = \"c1\"\nfeature = { kind = \"mibb\", p = 0.1, layers = \"all\" }\n",
            &["bad.toml:3:", "layer[0].feature.layers"],
        ),
        // override parameter rules are checked too, with the entry's line
        (
            "[[layer]]\nname = \"c1\"\n\n[layer.feature]\nkind = \"output_hit\"\np_out = 0.1\nbit_weights = [0.5, 0.5]\nmultiplicity = [0.5]\n",
            &["bad.toml:8:", "layer[0].feature.multiplicity", "sum to 1"],
        ),
        // SRAM-buffer flips are per-bit probabilities
        (
            "[[layer]]\nname = \"c1\"\nstored_flip = 1.5\n",
            &["bad.toml:3:", "layer[0].stored_flip", "probability"],
        ),
        (
            "[[layer]]\nname = \"c1\"\ninput_flip = -1e-9\n",
            &["bad.toml:3:", "layer[0].input_flip", "probability"],
        ),
        (
            "[[layer]]\nname = \"c1\"\nfilter_flip = 2.0\n",
            &["bad.toml:3:", "layer[0].filter_flip", "probability"],
        ),
        // stuck cells of the feature-map buffers
        (
            "[stuck_cells.ifmap]\nwords = 0\np0 = 1e-3\n",
            &["bad.toml:2:", "stuck_cells.ifmap.words", "at least 1"],
        ),
        (
            "[stuck_cells.ofmap]\nwords = 64\np0 = 0.75\np1 = 0.5\n",
            &["bad.toml:", "stuck_cells.ofmap.p1", "at most 1"],
        ),
        (
            "[stuck_cells.psum]\nwords = 64\n",
            &["bad.toml:", "psum"],
        ),
        // stuck MAC-unit bits
        (
            "[stuck_macs]\ndataflow = \"os\"\nrows = 0\ncols = 4\n",
            &["bad.toml:3:", "stuck_macs.rows", "at least 1"],
        ),
        (
            "[stuck_macs]\ndataflow = \"rs\"\nrows = 2\ncols = 4\n",
            &["bad.toml:2:", "stuck_macs.dataflow", "\"os\", \"ws\", \"is\" or \"bit-serial\""],
        ),
        (
            "[stuck_macs]\ndataflow = \"os\"\nrows = 4\ncols = 4\nproduct = { p0 = 0.75, p1 = 0.5 }\n",
            &["bad.toml:", "stuck_macs.product.p1", "at most 1"],
        ),
        (
            "[stuck_macs]\ndataflow = \"os\"\nrows = 4\ncols = 4\naccumulator = { p0 = -1e-3 }\n",
            &["bad.toml:", "stuck_macs.accumulator.p0"],
        ),
        (
            "[stuck_macs]\ndataflow = \"os\"\nrows = 4\ncols = 4\npsum = { p0 = 1e-3 }\n",
            &["bad.toml:", "psum"],
        ),
        (
            "[stuck_macs]\ndataflow = \"ws\"\ncols = 4\n",
            &["bad.toml:", "rows"],
        ),
        (
            "[stuck_macs]\ndataflow = \"bit-serial\"\nrows = 4\ncols = 4\nbits_per_cycle = 1\n",
            &["bad.toml:", "stuck_macs.filter_rows", "missing"],
        ),
        (
            "[stuck_macs]\ndataflow = \"os\"\nrows = 4\ncols = 4\nfilter_rows = 8\n",
            &["bad.toml:5:", "stuck_macs.filter_rows", "bit-serial"],
        ),
        (
            "[stuck_macs]\ndataflow = \"bit-serial\"\nrows = 4\ncols = 4\nfilter_rows = 8\nbits_per_cycle = 0\n",
            &["bad.toml:6:", "stuck_macs.bits_per_cycle", "positive"],
        ),
        (
            "[stuck_macs]\ndataflow = \"bit-serial\"\nrows = 4\ncols = 4\nfilter_rows = 8\nbits_per_cycle = 2\nweight = { p1 = 1e-4 }\n",
            &["bad.toml:", "stuck_macs.weight.p0", "weight model"],
        ),
        (
            "[stuck_macs]\ndataflow = \"bit-serial\"\nrows = 4\ncols = 4\nfilter_rows = 8\nbits_per_cycle = 2\nserial = \"weights\"\n",
            &["bad.toml:7:", "stuck_macs.serial", "\"activations\" (default) or \"both\""],
        ),
        (
            "[stuck_macs]\ndataflow = \"bit-serial\"\nrows = 4\ncols = 4\nfilter_rows = 8\nbits_per_cycle = 2\nprecision = \"dynamic\"\n",
            &["bad.toml:7:", "stuck_macs.precision", "\"per-group\""],
        ),
        (
            "[stuck_macs]\ndataflow = \"is\"\nrows = 4\ncols = 4\nprecision = \"per-group\"\n",
            &["bad.toml:5:", "stuck_macs.precision", "bit-serial"],
        ),
        // not TOML
        ("[feature\nkind = 1\n", &["bad.toml", "line 1"]),
    ];
    for (text, want) in cases {
        let e = parse_err(text);
        for w in *want {
            assert!(e.contains(w), "error for\n{text}\nis `{e}`, missing `{w}`");
        }
    }
}

#[test]
fn layer_names_are_checked_against_the_network() {
    let m = FaultModel::load(&examples().join("per-layer-example.toml")).unwrap();
    assert!(m
        .check_layer_names(&["stem", "conv2", "fc", "conv3"])
        .is_ok());
    let e = m
        .check_layer_names(&["stem", "conv_2", "fc"])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`conv2` ([[layer]])") && e.contains("conv_2"),
        "{e}"
    );
    let m = parse("[feature]\nkind = \"mibb\"\np = 0.1\nlayers = [\"a\", \"b\"]\n").unwrap();
    let e = m.check_layer_names(&["a"]).unwrap_err().to_string();
    assert!(
        e.contains("`b` (feature.layers)") && !e.contains("`a`"),
        "{e}"
    );
}

#[test]
fn empty_file_is_no_faults() {
    let m = parse("").unwrap();
    assert!(m.feature().is_none() && m.weight().is_none());
    assert!(m.weight_persistent());
}

#[test]
fn feature_flags() {
    let m = FaultModel::parse_feature_flag("mibb:1e-4").unwrap();
    let f = m.spec().feature.as_ref().unwrap();
    assert_eq!(f.fault, FeatureFault::Mibb(Mibb { p: 1e-4 }));
    assert_eq!(f.layers, LayerSelection::Conv);
    let m = FaultModel::parse_feature_flag("bitflip:1e-5:all").unwrap();
    let f = m.spec().feature.as_ref().unwrap();
    assert_eq!(f.layers, LayerSelection::All);
    assert!(matches!(f.fault, FeatureFault::BitFlip(b) if b.p == 1e-5));
    assert!(FaultModel::parse_feature_flag("none")
        .unwrap()
        .feature()
        .is_none());
    for bad in [
        "mibb",
        "mibb:",
        "mibb:x",
        "mibb:2",
        "mibb:-1e-4",
        "mibb:NaN",
        "gauss:0.1",
        "mibb:1e-4:linear",
        "none:3",
        "",
    ] {
        let e = FaultModel::parse_feature_flag(bad).unwrap_err();
        assert!(matches!(e, FaultError::Flag { .. }), "{bad}: {e}");
        assert!(e.to_string().contains(&format!("`{bad}`")), "{e}");
    }
}

#[test]
fn weight_flags() {
    let stuck = |m: &FaultModel| match &m.spec().weight.as_ref().unwrap().fault {
        WeightFault::StuckAt(s) => (s.p0.at(0), s.p1.at(0)),
        other => panic!("{other:?}"),
    };
    let m = FaultModel::parse_weight_flag("sa:1e-3").unwrap();
    assert_eq!(stuck(&m), (5e-4, 5e-4));
    assert_eq!(
        m.spec().weight.as_ref().unwrap().layers,
        LayerSelection::All
    );
    assert!(m.weight_persistent());
    assert_eq!(
        stuck(&FaultModel::parse_weight_flag("sa0:1e-3").unwrap()),
        (1e-3, 0.0)
    );
    assert_eq!(
        stuck(&FaultModel::parse_weight_flag("sa1:1e-3").unwrap()),
        (0.0, 1e-3)
    );
    let m = FaultModel::parse_weight_flag("adsaf:0.08:per-forward").unwrap();
    let w = m.spec().weight.as_ref().unwrap();
    assert_eq!(w.layers, LayerSelection::Conv);
    assert!(!m.weight_persistent());
    assert!(matches!(w.fault, WeightFault::AdSaf(a) if a.p == 0.08 && a.sa1_fraction == 0.163));
    let m = FaultModel::parse_weight_flag("adsaf:0.08:all").unwrap();
    assert_eq!(
        m.spec().weight.as_ref().unwrap().layers,
        LayerSelection::All
    );
    for bad in ["sa", "sa:1.5", "adsaf:x", "flip:0.1", "sa:1e-3:sometimes"] {
        let e = FaultModel::parse_weight_flag(bad).unwrap_err();
        assert!(e.to_string().contains(&format!("`{bad}`")), "{e}");
    }
}

#[test]
fn merge_flags_and_conflicts() {
    let f = FaultModel::parse_feature_flag("mibb:1e-4").unwrap();
    let w = FaultModel::parse_weight_flag("adsaf:0.08").unwrap();
    let both = f.clone().merge(w.clone()).unwrap();
    assert!(both.feature().is_some() && both.weight().is_some());
    assert!(both.describe().contains("mibb") && both.describe().contains("adsaf"));
    assert!(f.clone().merge(f.clone()).is_err());
    assert!(w.clone().merge(w).is_err());
    let training = both.with_weight_persistent(false);
    assert!(!training.weight_persistent());
}
