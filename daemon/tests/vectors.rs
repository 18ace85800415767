//! Vector collections through the engine's vector service, on the in-memory device simulator:
//! search against a brute-force reference, persistence across reopen, crash images after sync,
//! and bad input.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{FixedClock, Rng};
use vexfs_daemon::engine::fs::Creds;
use vexfs_daemon::engine::{Engine, EngineOptions};
use vexfs_daemon::errno::Errno;
use vexfs_daemon::io::sim::SimStorage;
use vexfs_daemon::vector::search::filter::Filter;
use vexfs_daemon::vector::search::{self, Neighbor};
use vexfs_daemon::vector::{CollectionSpec, VectorError, Vectors, ID_MAX};
use vexfs_format::collection::{AttrValue, Attrs, Metric};
use vexfs_format::fsck;
use vexfs_format::inode::ROOT_INO;

const VOLUME_BYTES: u64 = 256 << 20;
const CREDS: Creds = Creds { uid: 0, gid: 0 };

fn fresh_image() -> Vec<u8> {
    common::fresh_image(VOLUME_BYTES, [7; 16], "vec")
}

struct Volume {
    sim: Arc<SimStorage>,
    engine: Option<Engine<Arc<SimStorage>>>,
    vectors: Option<Vectors<Arc<SimStorage>>>,
}

impl Volume {
    fn open(image: Vec<u8>) -> Volume {
        let sim = Arc::new(SimStorage::from_image(image));
        let options = EngineOptions { cache_bytes: 16 << 20, commit_interval: Duration::from_secs(3600) };
        let engine = Engine::open(Arc::clone(&sim), Arc::new(FixedClock), options).expect("open the volume");
        let vectors = Vectors::new(engine.handle(), 2);
        Volume { sim, engine: Some(engine), vectors: Some(vectors) }
    }

    fn vectors(&self) -> &Vectors<Arc<SimStorage>> {
        self.vectors.as_ref().expect("open")
    }

    fn close(mut self) -> Vec<u8> {
        let vectors = self.vectors.take().expect("open");
        vectors.flush_all().expect("flush");
        drop(vectors);
        self.engine.take().expect("open").close().expect("close");
        self.sim.image()
    }

    fn mkdir(&self, name: &str) -> u64 {
        self.vectors().engine().mkdir(ROOT_INO, name.as_bytes(), 0o755, CREDS).expect("mkdir").ino
    }

    /// A new directory made a collection.
    fn collection(&self, name: &str, dim: usize, metric: Metric, shards: u32) -> u64 {
        let dir = self.mkdir(name);
        let spec = CollectionSpec { dim: dim as u32, metric, shards, text: None };
        self.vectors().create(dir, &spec).expect("create the collection");
        dir
    }
}

fn check_clean(image: &[u8]) {
    let mut read = |addr: vexfs_format::BlockAddr, buf: &mut [u8]| -> Result<(), std::convert::Infallible> {
        let at = addr.byte_offset() as usize;
        buf.copy_from_slice(&image[at..at + buf.len()]);
        Ok(())
    };
    let report = fsck::check(&mut read, image.len() as u64).expect("fsck runs");
    assert!(report.is_clean(), "fsck: {:#?}", report.problems);
}

impl Rng {
    fn float(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }

    fn vectors(&mut self, count: usize, dim: usize) -> Vec<f32> {
        (0..count * dim).map(|_| self.float()).collect()
    }
}

/// The reference: every live vector's distance, sorted by (distance, id).
fn brute_force(metric: Metric, live: &[(u64, Vec<f32>)], query: &[f32], k: usize) -> Vec<Neighbor> {
    let mut q = query.to_vec();
    if metric == Metric::Cosine {
        search::normalize(&mut q);
    }
    let mut all: Vec<Neighbor> = live
        .iter()
        .map(|(id, v)| {
            let mut v = v.clone();
            if metric == Metric::Cosine {
                search::normalize(&mut v);
            }
            Neighbor { id: *id, distance: search::distance(metric, &q, &v) }
        })
        .collect();
    all.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.id.cmp(&b.id)));
    all.truncate(k);
    all
}

fn assert_same(found: &[Neighbor], expected: &[Neighbor]) {
    assert_eq!(found.len(), expected.len(), "found {found:?}\nexpected {expected:?}");
    for (f, e) in found.iter().zip(expected) {
        let tolerance = 1e-3 * e.distance.abs().max(1.0);
        assert!((f.distance - e.distance).abs() <= tolerance, "distance {} vs {}", f.distance, e.distance);
    }
    // Ids may differ only where distances tie within the tolerance.
    let kth = expected.last().map_or(0.0, |n| n.distance);
    for f in found {
        if !expected.iter().any(|e| e.id == f.id) {
            assert!((f.distance - kth).abs() <= 1e-3 * kth.abs().max(1.0), "id {} not in the reference", f.id);
        }
    }
}

#[test]
fn every_metric_matches_brute_force_and_survives_reopen() {
    let mut image = fresh_image();
    for (round, metric) in Metric::ALL.into_iter().enumerate() {
        let volume = Volume::open(image);
        let dim = 24;
        let dir = volume.mkdir(&format!("c{round}"));
        let spec = CollectionSpec { dim, metric, shards: 0, text: None };
        volume.vectors().create(dir, &spec).expect("create");
        let mut rng = Rng(round as u64 + 1);
        let data = rng.vectors(600, dim as usize);
        let ids = volume.vectors().insert(dir, None, data.clone(), Vec::new()).expect("insert");
        assert_eq!(ids, (0..600).collect::<Vec<u64>>());
        let deleted: Vec<u64> = (0..600).step_by(7).collect();
        assert_eq!(volume.vectors().delete(dir, &deleted).expect("delete"), deleted.len() as u64);
        let live: Vec<(u64, Vec<f32>)> = ids
            .iter()
            .filter(|id| !deleted.contains(id))
            .map(|&id| (id, data[id as usize * dim as usize..(id as usize + 1) * dim as usize].to_vec()))
            .collect();
        let queries = rng.vectors(5, dim as usize);
        let found = volume.vectors().knn(dir, &queries, 10, None).expect("knn");
        for (q, result) in queries.chunks(dim as usize).zip(&found) {
            assert_same(result, &brute_force(metric, &live, q, 10));
        }
        volume.vectors().sync(dir).expect("sync");
        image = volume.close();
        check_clean(&image);

        let volume = Volume::open(image);
        let again = volume.vectors().knn(dir, &queries, 10, None).expect("knn after reopen");
        assert_eq!(again, found, "{metric:?}: results changed across reopen");
        let stats = volume.vectors().stats(dir).expect("stats");
        assert_eq!(stats.vectors, live.len() as u64);
        assert_eq!(stats.metric, metric);
        image = volume.close();
    }
}

#[test]
fn range_and_filters() {
    let volume = Volume::open(fresh_image());
    let dim = 8usize;
    let dir = volume.collection("r", dim, Metric::L2, 3);
    let mut rng = Rng(42);
    let data = rng.vectors(300, dim);
    let attrs: Vec<Attrs> = (0..300)
        .map(|i| {
            vec![("parity".to_owned(), AttrValue::Int(i % 2)), ("name".to_owned(), AttrValue::Str(format!("v{i}")))]
        })
        .collect();
    let ids: Vec<u64> = (1000..1300).collect();
    volume.vectors().insert(dir, Some(&ids), data.clone(), attrs).unwrap();
    let query = rng.vectors(1, dim);
    let filter = Filter::parse("parity = 1").expect("filter");
    let found = volume.vectors().knn(dir, &query, 5, Some(filter)).unwrap();
    let odd: Vec<(u64, Vec<f32>)> =
        (0..300).filter(|i| i % 2 == 1).map(|i| (1000 + i as u64, data[i * dim..(i + 1) * dim].to_vec())).collect();
    assert_same(&found[0], &brute_force(Metric::L2, &odd, &query, 5));

    let all: Vec<(u64, Vec<f32>)> =
        (0..300).map(|i| (1000 + i as u64, data[i * dim..(i + 1) * dim].to_vec())).collect();
    let reference = brute_force(Metric::L2, &all, &query, 300);
    let radius = reference[20].distance;
    let within = volume.vectors().range(dir, &query, radius, None, 1000).unwrap();
    let expected: Vec<Neighbor> = reference.iter().copied().filter(|n| n.distance <= radius).collect();
    assert_same(&within[0], &expected);
}

#[test]
fn acknowledged_after_sync_survives_crash_images() {
    let volume = Volume::open(fresh_image());
    let dim = 16usize;
    let dir = volume.collection("durable", dim, Metric::Dot, 2);
    let mut rng = Rng(9);
    let synced = rng.vectors(400, dim);
    volume.vectors().insert(dir, None, synced.clone(), Vec::new()).unwrap();
    volume.vectors().sync(dir).unwrap();
    // More inserts and deletes that nobody syncs: a crash may keep any prefix of them.
    let unsynced = rng.vectors(5000, dim);
    volume.vectors().insert(dir, None, unsynced.clone(), Vec::new()).unwrap();
    volume.vectors().flush_all().unwrap();
    volume.vectors().delete(dir, &[1, 2, 3]).unwrap();
    volume.vectors().flush_all().unwrap();
    for seed in 0..8 {
        let image = volume.sim.crash_image(seed);
        check_clean(&image);
        let after = Volume::open(image);
        let stats = after.vectors().stats(dir).expect("collection opens after a crash");
        assert!(stats.vectors >= 397, "seed {seed}: {} vectors survived", stats.vectors);
        let query = &synced[5 * dim..6 * dim];
        let found = after.vectors().knn(dir, query, 1, Some(Filter::parse("not exists x").unwrap())).unwrap();
        assert!(!found[0].is_empty());
        // The synced vector 5 is its own best match under dot product only if it wins; check presence instead.
        let all = after.vectors().knn(dir, query, 10_000, None).unwrap();
        for id in 4..400u64 {
            assert!(all[0].iter().any(|n| n.id == id), "seed {seed}: synced vector {id} lost");
        }
        drop(after);
    }
}

#[test]
fn bad_input_is_refused_and_stores_nothing() {
    let volume = Volume::open(fresh_image());
    let dir = volume.mkdir("bad");
    let plain = volume.mkdir("plain");
    let v = volume.vectors();
    let err = |e: VectorError| e.to_string();
    assert!(err(v.create(dir, &CollectionSpec { dim: 0, metric: Metric::L2, shards: 0, text: None }).unwrap_err())
        .contains("dimension 0"));
    v.create(dir, &CollectionSpec { dim: 4, metric: Metric::Cosine, shards: 0, text: None }).unwrap();
    assert!(v.create(dir, &CollectionSpec { dim: 4, metric: Metric::L2, shards: 0, text: None }).is_err());
    assert!(err(v.insert(dir, None, vec![1.0, 2.0, 3.0], Vec::new()).unwrap_err()).contains("dimension 4"));
    assert!(err(v.insert(dir, None, vec![1.0, f32::NAN, 3.0, 4.0], Vec::new()).unwrap_err()).contains("NaN"));
    assert!(err(v.insert(dir, None, vec![1.0, f32::INFINITY, 3.0, 4.0], Vec::new()).unwrap_err()).contains("inf"));
    assert!(err(v.insert(dir, None, vec![0.0; 4], Vec::new()).unwrap_err()).contains("zeros"));
    assert!(err(v.insert(dir, Some(&[5, 5]), vec![1.0; 8], Vec::new()).unwrap_err()).contains("twice"));
    assert!(err(v.knn(dir, &[1.0; 4], 0, None).unwrap_err()).contains("k = 0"));
    assert!(err(v.knn(dir, &[1.0; 4], 1 << 40, None).unwrap_err()).contains("k = "));
    assert!(matches!(v.knn(plain, &[1.0; 4], 1, None).unwrap_err(), VectorError::NotCollection(_)));
    assert_eq!(v.stats(dir).unwrap().vectors, 0, "a refused insert stored something");
    // Finite values too large to square: refused where they would be scored as they are (their
    // distances would be infinite or NaN); cosine normalises them first.
    v.insert(dir, None, vec![1e30, 1e30, 0.0, 0.0], Vec::new()).expect("a cosine row is normalised");
    let l2 = volume.collection("l2", 2, Metric::L2, 0);
    let huge = vec![1.0, 1.0, 3e19, 0.0];
    assert!(
        err(v.insert(l2, None, huge.clone(), Vec::new()).unwrap_err()).contains("vector 1: its squared norm overflows")
    );
    assert!(err(v.knn(l2, &huge, 1, None).unwrap_err()).contains("query 1: its squared norm overflows"));
    assert_eq!(v.stats(l2).unwrap().vectors, 0, "a refused insert stored something");
}

#[test]
fn rmdir_frees_a_collection() {
    let volume = Volume::open(fresh_image());
    let dir = volume.mkdir("gone");
    let v = volume.vectors();
    v.create(dir, &CollectionSpec { dim: 32, metric: Metric::L2, shards: 2, text: None }).unwrap();
    let free_before = v.engine().statfs().unwrap().blocks_free;
    v.insert(dir, None, Rng(3).vectors(2000, 32), Vec::new()).unwrap();
    v.sync(dir).unwrap();
    assert!(v.engine().statfs().unwrap().blocks_free < free_before);
    v.forget(dir);
    v.engine().rmdir(ROOT_INO, b"gone").unwrap();
    v.engine().sync().unwrap();
    assert!(v.engine().statfs().unwrap().blocks_free >= free_before);
    let image = volume.close();
    check_clean(&image);
}

/// One step of [`random_histories_match_a_model`].
#[derive(Clone, Debug)]
enum Step {
    /// Insert vectors with these ids (seeded values); an id already stored is replaced.
    Insert(Vec<u64>, u64),
    Delete(Vec<u64>),
    Reopen,
}

fn step_strategy() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    // Ids from a small range, so inserts replace and deletes hit; ascending runs and shuffled
    // batches both occur, which exercises the sorted run and the id map of every shard.
    let ids = prop::collection::btree_set(0u64..120, 1..40);
    prop_oneof![
        4 => (ids.clone(), any::<u64>(), any::<bool>()).prop_map(|(set, seed, shuffle)| {
            let mut ids: Vec<u64> = set.into_iter().collect();
            if shuffle {
                ids.reverse();
            }
            Step::Insert(ids, seed)
        }),
        2 => ids.prop_map(|set| Step::Delete(set.into_iter().collect())),
        1 => Just(Step::Reopen),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config { cases: 24, ..Default::default() })]

    /// Any history of inserts (new ids, replaced ids, in any order), deletes and reopens leaves
    /// exactly the model's vectors: k-NN over all of them equals the brute force, and attributes
    /// follow their vectors.
    #[test]
    fn random_histories_match_a_model(steps in proptest::collection::vec(step_strategy(), 1..14)) {
        let dim = 8usize;
        let mut volume = Volume::open(fresh_image());
        let dir = volume.collection("model", dim, Metric::L2, 3);
        let mut model: std::collections::BTreeMap<u64, Vec<f32>> = Default::default();
        for step in &steps {
            match step {
                Step::Insert(ids, seed) => {
                    let data = Rng(*seed | 1).vectors(ids.len(), dim);
                    let attrs: Vec<Attrs> =
                        ids.iter().map(|&id| vec![("id".to_owned(), AttrValue::Int(id as i64))]).collect();
                    volume.vectors().insert(dir, Some(ids), data.clone(), attrs).unwrap();
                    for (i, &id) in ids.iter().enumerate() {
                        model.insert(id, data[i * dim..(i + 1) * dim].to_vec());
                    }
                }
                Step::Delete(ids) => {
                    let expected = ids.iter().filter(|id| model.remove(id).is_some()).count();
                    proptest::prop_assert_eq!(volume.vectors().delete(dir, ids).unwrap(), expected as u64);
                }
                Step::Reopen => volume = Volume::open(volume.close()),
            }
        }
        let live: Vec<(u64, Vec<f32>)> = model.iter().map(|(id, v)| (*id, v.clone())).collect();
        let query = Rng(77).vectors(1, dim);
        let found = volume.vectors().knn(dir, &query, 200, None).unwrap();
        assert_same(&found[0], &brute_force(Metric::L2, &live, &query, 200));
        proptest::prop_assert_eq!(volume.vectors().stats(dir).unwrap().vectors, model.len() as u64);
        let probe: Vec<u64> = (0..120).collect();
        for (id, attrs) in probe.iter().zip(volume.vectors().attrs(dir, &probe).unwrap()) {
            let expected = model.contains_key(id).then(|| vec![("id".to_owned(), AttrValue::Int(*id as i64))]);
            proptest::prop_assert_eq!(attrs, expected, "attributes of id {}", id);
        }
    }
}

#[test]
fn a_failed_log_append_fails_sync_and_keeps_the_vectors_searchable() {
    let volume = Volume::open(fresh_image());
    let dim = 4usize;
    let dir = volume.collection("failing", dim, Metric::L2, 1);
    let data = Rng(5).vectors(100, dim);
    volume.vectors().insert(dir, None, data.clone(), Vec::new()).unwrap();
    volume.sim.fail_writes_after(0);
    let error = volume.vectors().sync(dir).unwrap_err();
    assert_eq!(error.errno(), libc::EIO, "{error}");
    // The log cannot grow past the failed append: later syncs fail too, with the shard named.
    volume.sim.clear_faults();
    volume.vectors().insert(dir, None, Rng(6).vectors(10, dim), Vec::new()).unwrap();
    let again = volume.vectors().sync(dir).unwrap_err();
    assert!(matches!(again, VectorError::LogFailed { .. }), "{again}");
    // What was acknowledged is still searchable.
    let found = volume.vectors().knn(dir, &data[..dim], 1, None).unwrap();
    assert_eq!(found[0][0].id, 0);
    assert_eq!(volume.vectors().stats(dir).unwrap().vectors, 110);
}

/// The nearest stored vector to each of `probes` (id, vector) must be itself, at distance 0, under
/// L2: the vector stored under that id is exactly the one inserted.
fn assert_stored(volume: &Volume, dir: u64, dim: usize, probes: &[(u64, Vec<f32>)]) {
    let queries: Vec<f32> = probes.iter().flat_map(|(_, v)| v.iter().copied()).collect();
    let found = volume.vectors().knn(dir, &queries, 1, None).unwrap();
    for ((id, _), hits) in probes.iter().zip(&found) {
        assert_eq!(hits[0].id, *id, "the vector of id {id} is not what was inserted (dim {dim})");
        assert_eq!(hits[0].distance, 0.0, "id {id}");
    }
}

/// Goal: shard logs many log-writer buffers long, written several buffers at a time, flushed at
/// arbitrary points and reopened in between, replay exactly what was acknowledged. Method: one
/// shard, 800-byte rows (so records, buffers and flushes end inside blocks), about 30 MB of
/// inserts in batches of uneven sizes with attributes on some, replacements and deletes, flushes
/// every few batches and a reopen halfway; then every live id's vector and attributes, and every
/// deleted id's absence, against the model.
#[test]
fn long_logs_replay_exactly() {
    let dim = 200usize;
    let mut volume = Volume::open(fresh_image());
    let dir = volume.collection("long", dim, Metric::L2, 1);
    let mut rng = Rng(21);
    let mut model: std::collections::BTreeMap<u64, (Vec<f32>, Attrs)> = Default::default();
    let mut next_id = 0u64;
    for round in 0..23 {
        let count = 900 + (rng.next() % 1400) as usize;
        let data = rng.vectors(count, dim);
        // Every fifth round replaces earlier ids as well as adding new ones.
        let ids: Vec<u64> = (0..count as u64)
            .map(|i| if round % 5 == 4 && i % 3 == 0 { (i * 7 + round) % next_id.max(1) } else { next_id + i })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let data = data[..ids.len() * dim].to_vec();
        let attrs: Vec<Attrs> = if round % 3 == 0 {
            ids.iter()
                .map(|&id| vec![("round".to_owned(), AttrValue::Int(round as i64 * 1000 + id as i64 % 7))])
                .collect()
        } else {
            Vec::new()
        };
        volume.vectors().insert(dir, Some(&ids), data.clone(), attrs.clone()).unwrap();
        for (i, &id) in ids.iter().enumerate() {
            model.insert(id, (data[i * dim..(i + 1) * dim].to_vec(), attrs.get(i).cloned().unwrap_or_default()));
        }
        next_id = next_id.max(ids.iter().max().unwrap() + 1);
        if round % 4 == 1 {
            let gone: Vec<u64> = (0..40).map(|j| (j * 131 + round) % next_id).collect();
            volume.vectors().delete(dir, &gone).unwrap();
            for id in gone {
                model.remove(&id);
            }
        }
        if round % 3 == 2 {
            volume.vectors().flush(dir).unwrap();
        }
        if round == 12 {
            volume = Volume::open(volume.close());
        }
    }
    assert!(volume.vectors().stats(dir).unwrap().pending_bytes > 0, "the last rounds are not flushed yet");
    volume = Volume::open(volume.close());
    let stats = volume.vectors().stats(dir).unwrap();
    assert_eq!(stats.vectors, model.len() as u64);
    assert!(stats.log_bytes > 24 << 20, "a log of {} bytes spans several writer buffers", stats.log_bytes);
    let probes: Vec<(u64, Vec<f32>)> = model.iter().step_by(97).map(|(id, (v, _))| (*id, v.clone())).collect();
    assert_stored(&volume, dir, dim, &probes);
    let all: Vec<u64> = (0..next_id).collect();
    for (id, attrs) in all.iter().zip(volume.vectors().attrs(dir, &all).unwrap()) {
        assert_eq!(attrs, model.get(id).map(|(_, a)| a.clone()), "id {id}");
    }
    check_clean(&volume.close());
}

/// Goal: a device error in the middle of a long append fails the log without leaving a hole, even
/// when the device works again for the writes queued behind the failed one: sync reports the
/// error, and the volume reopens (as it stands, and after a crash) with every vector synced
/// before. Method: sync a first part, then insert about 20 MB more in one call with the second
/// device write failing (a transient error), sync (fails), commit the engine (refused: the failed
/// write latched it read-only), reopen.
#[test]
fn a_failure_inside_a_long_append_leaves_a_replayable_log() {
    let dim = 128usize;
    let volume = Volume::open(fresh_image());
    let dir = volume.collection("torn", dim, Metric::L2, 1);
    let mut rng = Rng(31);
    let first = rng.vectors(5000, dim);
    volume.vectors().insert(dir, None, first.clone(), Vec::new()).unwrap();
    volume.vectors().sync(dir).unwrap();
    // One large insert: the writer queues several buffers for the device before it can learn
    // of the failure, so the device thread itself must refuse the ones behind the failed write.
    volume.sim.fail_one_write_after(1);
    volume.vectors().insert(dir, None, rng.vectors(40_000, dim), Vec::new()).unwrap();
    let error = volume.vectors().sync(dir).unwrap_err();
    assert_eq!(error.errno(), libc::EIO, "{error}");
    // The engine would commit its metadata on its own too (every commit interval), making
    // whatever the log writer linked after the failed write durable; but the failed data write
    // latched the engine read-only, so that commit is refused.
    let refused = volume.vectors().engine().sync().unwrap_err();
    assert_eq!(refused.errno(), libc::EROFS, "{refused}");
    let images = (0..4).map(|seed| volume.sim.crash_image(seed)).chain([volume.sim.image()]);
    for (seed, image) in images.enumerate() {
        check_clean(&image);
        let after = Volume::open(image);
        let stats = after.vectors().stats(dir).expect("the collection opens after the failure");
        assert!(stats.vectors >= 5000, "seed {seed}: {} vectors", stats.vectors);
        let probes: Vec<(u64, Vec<f32>)> = (0..5000u64)
            .step_by(499)
            .map(|id| (id, first[id as usize * dim..(id as usize + 1) * dim].to_vec()))
            .collect();
        assert_stored(&after, dir, dim, &probes);
    }
}

/// Goal: ids a caller gave may take the top of the id space ([`ID_MAX`]), and an insert that asks
/// the service to assign ids past them is refused, not an overflow or a wrapped id (found by the
/// `ioctl` fuzz target; its corpus keeps the input); ids above the top are refused as given.
#[test]
fn assigning_ids_past_the_largest_is_refused() {
    let volume = Volume::open(fresh_image());
    let dir = volume.collection("ids", 2, Metric::L2, 2);
    let above = volume.vectors().insert(dir, Some(&[u64::MAX - 2]), vec![1.0, 2.0], Vec::new());
    assert!(matches!(above, Err(VectorError::Invalid(_))), "{above:?}");
    volume.vectors().insert(dir, Some(&[ID_MAX - 1]), vec![1.0, 2.0], Vec::new()).expect("an id near the top");
    let assigned = volume.vectors().insert(dir, None, vec![3.0, 4.0], Vec::new()).expect("one id is left to assign");
    assert_eq!(assigned, [ID_MAX]);
    let refused = volume.vectors().insert(dir, None, vec![5.0, 6.0], Vec::new());
    assert!(matches!(refused, Err(VectorError::IdsExhausted { .. })), "{refused:?}");
    assert_eq!(refused.unwrap_err().errno(), libc::ENOSPC);
    volume.close();
}
