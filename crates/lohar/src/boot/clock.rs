//! Keeping a VM guest's clock right across pauses and memory snapshots.
//!
//! A guest's clocks stop while its VM is stopped (warm) or snapshotted to disk (cold): after a
//! wake its wall clock is behind by however long that lasted. QEMU's emulated RTC follows the
//! host's clock, so a thread compares the two every second and steps the system clock to the
//! RTC when they differ by more than [`MAX_DRIFT_SECS`].

use std::os::fd::AsRawFd;
use std::time::Duration;

/// Larger differences are corrected (the RTC has whole-second resolution).
pub const MAX_DRIFT_SECS: i64 = 2;
const RTC: &str = "/dev/rtc0";

/// Starts the sync thread when the guest has an RTC (the vm engine's guests do).
pub fn start_rtc_sync() {
    if !std::path::Path::new(RTC).exists() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("rtc-sync".into())
        .spawn(|| loop {
            std::thread::sleep(Duration::from_secs(1));
            if let Err(e) = sync_once() {
                tracing::debug!(error = %e, "rtc sync failed");
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "starting the rtc sync thread failed");
    }
}

/// Reads the RTC (UTC) as seconds since the epoch.
fn read_rtc() -> std::io::Result<i64> {
    let f = std::fs::File::open(RTC)?;
    // SAFETY: libc::tm is plain data; RTC_RD_TIME fills its first nine ints (struct rtc_time
    // has the same leading layout) and the rest stays zeroed.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // RTC_RD_TIME = _IOR('p', 0x09, struct rtc_time) (36 bytes).
    const RTC_RD_TIME: libc::c_ulong = 0x8024_7009;
    // SAFETY: the ioctl writes at most sizeof(struct rtc_time) = 36 bytes into `tm`, which is
    // larger.
    if unsafe { libc::ioctl(f.as_raw_fd(), RTC_RD_TIME, &mut tm) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(tm_to_unix(&tm))
}

/// Seconds since the epoch of a broken-down UTC time (pure; unit-tested).
pub fn tm_to_unix(tm: &libc::tm) -> i64 {
    let year = i64::from(tm.tm_year) + 1900;
    let month = i64::from(tm.tm_mon) + 1;
    let day = i64::from(tm.tm_mday);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + i64::from(tm.tm_hour) * 3600 + i64::from(tm.tm_min) * 60 + i64::from(tm.tm_sec)
}

fn sync_once() -> std::io::Result<()> {
    let rtc = read_rtc()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    if (rtc - now).abs() <= MAX_DRIFT_SECS {
        return Ok(());
    }
    // Half a second past the RTC's whole second: the middle of where real time lies.
    let ts = libc::timespec {
        tv_sec: rtc as libc::time_t,
        tv_nsec: 500_000_000,
    };
    // SAFETY: clock_settime reads the timespec we own.
    if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    tracing::info!(behind_s = rtc - now, "stepped the clock to the RTC");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_to_unix() {
        // SAFETY: plain data.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        tm.tm_year = 70;
        tm.tm_mday = 1;
        assert_eq!(tm_to_unix(&tm), 0);
        // 2026-11-29 03:37:28 UTC
        tm.tm_year = 126;
        tm.tm_mon = 10;
        tm.tm_mday = 29;
        tm.tm_hour = 3;
        tm.tm_min = 37;
        tm.tm_sec = 28;
        assert_eq!(tm_to_unix(&tm), 1_795_923_448);
        // A leap day.
        tm.tm_year = 124;
        tm.tm_mon = 1;
        tm.tm_mday = 29;
        tm.tm_hour = 0;
        tm.tm_min = 0;
        tm.tm_sec = 0;
        assert_eq!(tm_to_unix(&tm), 1_709_164_800);
    }
}
