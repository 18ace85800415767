//! Writes files into a VexFS mount until the daemon dies under it, recording in a log on the
//! host file system exactly what fsync has made durable.
//!
//! Usage: `crash_writer --dir DIR --log LOG --seed N --mode simple|mixed [--steps-max N]`
//!
//! Each step touches a few files in DIR, fsyncs every touched file and DIR, and only then
//! appends its outcome to LOG and fsyncs LOG. So after a crash of the daemon (not of the host),
//! every step committed in LOG must be visible in DIR. The log is the model; its records are:
//!
//! - `T step name...`: the names the step about to run touches (logged and fsynced before it runs;
//!   after a crash the names of an uncommitted step may hold either state).
//! - `P name len hash`: after the step, `name` holds `len` bytes whose `content::hash` is `hash`.
//! - `D name`: after the step, `name` does not exist.
//! - `C step`: the step's records above are durable.
//!
//! Modes: `simple` creates one new file per step. `mixed` also overwrites ranges, truncates
//! (shrinking and growing), renames (plain and over an existing file), and unlinks.
//!
//! Exit codes: 0 after `--steps-max` steps, 2 for bad arguments, 3 when a file system call
//! fails (expected once the daemon is killed).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::ExitCode;

use vexfs_tests::content::{self, Rng};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Simple,
    Mixed,
}

struct Args {
    dir: PathBuf,
    log: PathBuf,
    seed: u64,
    mode: Mode,
    steps_max: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut dir = None;
    let mut log = None;
    let mut seed = None;
    let mut mode = None;
    let mut steps_max = u64::MAX;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--dir" => dir = Some(PathBuf::from(value)),
            "--log" => log = Some(PathBuf::from(value)),
            "--seed" => seed = Some(value.parse().map_err(|e| format!("--seed: {e}"))?),
            "--steps-max" => steps_max = value.parse().map_err(|e| format!("--steps-max: {e}"))?,
            "--mode" => {
                mode = Some(match value.as_str() {
                    "simple" => Mode::Simple,
                    "mixed" => Mode::Mixed,
                    other => return Err(format!("unknown mode {other:?}")),
                })
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        dir: dir.ok_or("--dir is required")?,
        log: log.ok_or("--log is required")?,
        seed: seed.ok_or("--seed is required")?,
        mode: mode.ok_or("--mode is required")?,
        steps_max,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(err) => {
            eprintln!("crash_writer: {err}");
            return ExitCode::from(2);
        }
    };
    let mut writer = match Writer::new(&args) {
        Ok(writer) => writer,
        Err(err) => {
            eprintln!("crash_writer: opening {}: {err}", args.log.display());
            return ExitCode::from(3);
        }
    };
    for step in 0..args.steps_max {
        let result = match args.mode {
            Mode::Simple => writer.simple_step(step),
            Mode::Mixed => writer.mixed_step(step),
        };
        if let Err(err) = result {
            eprintln!("crash_writer: step {step}: {err}");
            return ExitCode::from(3);
        }
    }
    ExitCode::SUCCESS
}

/// Files in DIR as the writer believes them to be after its last step.
type Model = BTreeMap<String, Vec<u8>>;

/// Keeps the mixed mode's directory small enough to verify quickly.
const LIVE_FILES_MAX: usize = 48;
const NEW_FILE_LEN_MAX: u64 = 200_000;
const OVERWRITE_LEN_MAX: u64 = 8192;

struct Writer {
    dir: PathBuf,
    log: File,
    seed: u64,
    model: Model,
}

impl Writer {
    fn new(args: &Args) -> io::Result<Writer> {
        let log = OpenOptions::new().create(true).append(true).open(&args.log)?;
        Ok(Writer { dir: args.dir.clone(), log, seed: args.seed, model: Model::new() })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn simple_step(&mut self, step: u64) -> io::Result<()> {
        let mut rng = Rng::for_key(self.seed, step);
        let name = format!("f{step:06}");
        let len = if rng.chance(1, 8) { rng.range(NEW_FILE_LEN_MAX, 1_000_000) } else { rng.below(NEW_FILE_LEN_MAX) };
        let data = content::content(self.seed, step, len as usize);
        self.begin(step, &BTreeSet::from([name.clone()]))?;
        let mut file = File::create(self.path(&name))?;
        file.write_all(&data)?;
        self.model.insert(name.clone(), data);
        self.commit(step, &BTreeSet::from([name]))
    }

    fn mixed_step(&mut self, step: u64) -> io::Result<()> {
        let mut rng = Rng::for_key(self.seed, step);
        let fresh = format!("n{step:06}");
        let existing = self.pick_existing(&mut rng);
        let action = rng.below(6);
        let evict = (self.model.len() >= LIVE_FILES_MAX)
            .then(|| self.model.keys().next().cloned())
            .flatten()
            .filter(|name| Some(name) != existing.as_ref());

        let mut touched = BTreeSet::from([fresh.clone()]);
        touched.extend(existing.iter().cloned());
        touched.extend(evict.iter().cloned());
        let renamed = format!("r{step:06}");
        let temp = format!("t{step:06}");
        match action {
            0 => touched.insert(renamed.clone()),
            4 => touched.insert(temp.clone()),
            _ => false,
        };
        self.begin(step, &touched)?;

        let len = rng.below(NEW_FILE_LEN_MAX) as usize;
        self.create(&fresh, content::content(self.seed, step, len))?;
        self.overwrite(&fresh, &mut rng)?;
        self.truncate(&fresh, &mut rng)?;
        if let Some(target) = &existing {
            match action {
                0 => self.rename(target, &renamed)?,
                1 => self.unlink(target)?,
                2 => self.truncate(target, &mut rng)?,
                3 => self.overwrite(target, &mut rng)?,
                4 => {
                    let len = rng.below(NEW_FILE_LEN_MAX) as usize;
                    self.create(&temp, content::content(self.seed, step | 1 << 40, len))?;
                    self.rename(&temp, target)?;
                }
                _ => self.rename(&fresh, target)?,
            }
        }
        if let Some(victim) = &evict {
            self.unlink(victim)?;
        }
        self.commit(step, &touched)
    }

    fn pick_existing(&self, rng: &mut Rng) -> Option<String> {
        if self.model.is_empty() {
            return None;
        }
        let index = rng.below(self.model.len() as u64) as usize;
        self.model.keys().nth(index).cloned()
    }

    fn create(&mut self, name: &str, data: Vec<u8>) -> io::Result<()> {
        let mut file = File::create(self.path(name))?;
        file.write_all(&data)?;
        self.model.insert(name.to_string(), data);
        Ok(())
    }

    /// Writes up to 8 KiB of fresh bytes at a random offset, possibly past the end.
    fn overwrite(&mut self, name: &str, rng: &mut Rng) -> io::Result<()> {
        let data = self.model.get_mut(name).expect("overwrite of a modelled file");
        let offset = rng.below(data.len() as u64 + 1) as usize;
        let mut patch = vec![0u8; rng.range(1, OVERWRITE_LEN_MAX) as usize];
        rng.fill(&mut patch);
        let file = OpenOptions::new().write(true).open(self.dir.join(name))?;
        file.write_all_at(&patch, offset as u64)?;
        if data.len() < offset + patch.len() {
            data.resize(offset + patch.len(), 0);
        }
        data[offset..offset + patch.len()].copy_from_slice(&patch);
        Ok(())
    }

    /// Shrinks (two times in three) or grows the file with `ftruncate`.
    fn truncate(&mut self, name: &str, rng: &mut Rng) -> io::Result<()> {
        let data = self.model.get_mut(name).expect("truncate of a modelled file");
        let len = if rng.chance(2, 3) {
            rng.below(data.len() as u64 + 1) as usize
        } else {
            data.len() + rng.range(1, 100_000) as usize
        };
        let file = OpenOptions::new().write(true).open(self.dir.join(name))?;
        file.set_len(len as u64)?;
        data.resize(len, 0);
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        fs::rename(self.path(from), self.path(to))?;
        let data = self.model.remove(from).expect("rename of a modelled file");
        self.model.insert(to.to_string(), data);
        Ok(())
    }

    fn unlink(&mut self, name: &str) -> io::Result<()> {
        fs::remove_file(self.path(name))?;
        self.model.remove(name);
        Ok(())
    }

    /// Logs the names a step will touch, durably, before the step changes anything.
    fn begin(&mut self, step: u64, touched: &BTreeSet<String>) -> io::Result<()> {
        let names: Vec<&str> = touched.iter().map(String::as_str).collect();
        self.append(&format!("T {} {}\n", step, names.join(" ")))
    }

    /// Makes the step durable in the mount (fsync every touched file that exists, then the
    /// directory), and only then records its outcome in the log.
    fn commit(&mut self, step: u64, touched: &BTreeSet<String>) -> io::Result<()> {
        for name in touched {
            if self.model.contains_key(name) {
                File::open(self.path(name))?.sync_all()?;
            }
        }
        File::open(&self.dir)?.sync_all()?;
        let mut records = String::new();
        for name in touched {
            match self.model.get(name) {
                Some(data) => records.push_str(&format!("P {name} {} {}\n", data.len(), content::hash(data))),
                None => records.push_str(&format!("D {name}\n")),
            }
        }
        records.push_str(&format!("C {step}\n"));
        self.append(&records)
    }

    fn append(&mut self, text: &str) -> io::Result<()> {
        self.log.write_all(text.as_bytes())?;
        self.log.sync_data()
    }
}
