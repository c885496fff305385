//! The WAV reader on any bytes: a typed error or samples, never a panic,
//! never more frames than the header declares or the bytes could hold.
#![no_main]

use callpulse::audio::wav::WavSource;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The reader takes a path: one scratch file per fuzzing process.
    let path = std::env::temp_dir().join(format!("callpulse-fuzz-{}.wav", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let Ok(mut src) = WavSource::open(&path) else {
        return;
    };
    let info = src.info();
    assert!((1..=2).contains(&info.channels));
    let mut legs = Vec::new();
    let mut frames = 0u64;
    loop {
        match src.read_chunk(4096, &mut legs) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                assert_eq!(legs.len(), info.channels as usize);
                assert!(legs.iter().all(|l| l.len() == n));
                assert!(legs.iter().flatten().all(|v| v.is_finite()));
                frames += n as u64;
            }
        }
    }
    assert!(frames <= info.frames, "{frames} frames, {} declared", info.frames);
    assert!(frames * info.channels as u64 <= data.len() as u64);
});
