//! What kind of file system a cache lives on: local or network.
//!
//! Detection happens once, when a disk backend opens: on Linux from `statfs(2)` (the file
//! system's magic number) and `/proc/self/mountinfo` (its type name, including the FUSE
//! subtype such as `fuse.sshfs`). The tables are public and the classification functions are
//! pure, so they are tested with injected values. On other systems the kind is
//! [`FsKind::Unknown`], which backends treat as local unless the user overrides it.
//!
//! The user's word wins over detection: [`FsChoice`] comes from a builder method, the
//! [`FS_ENV`] environment variable or the CLI's `--fs` flag.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The environment variable that overrides detection: `auto`, `network` or `local`.
pub const FS_ENV: &str = "PLEXCACHE_FS";

/// The kind of file system a path is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsKind {
    /// A local file system (or one that behaves like one: locks and caches are the kernel's).
    Local,
    /// A network (or cluster, or VM-shared) file system: reachable from other machines, with
    /// locks and caches that other mounts do not share.
    Network,
    /// Detection is not available (not Linux) or failed; treated as local.
    Unknown,
}

impl FsKind {
    /// `local`, `network` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Network => "network",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for FsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The user's choice: detect, or say what the file system is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsChoice {
    /// Detect (the default).
    #[default]
    Auto,
    /// Treat the file system as a network one, whatever detection says.
    Network,
    /// Treat the file system as local, whatever detection says (for a network file system
    /// used by this one machine only, at the user's own risk).
    Local,
}

impl FsChoice {
    /// `auto`, `network` or `local`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Network => "network",
            Self::Local => "local",
        }
    }

    /// The choice in [`FS_ENV`], if set. An unknown value is an [`Error::Config`] (a typo
    /// must not silently fall back to detection).
    pub fn from_env() -> Result<Option<Self>> {
        match std::env::var(FS_ENV) {
            Ok(v) if v.trim().is_empty() => Ok(None),
            Ok(v) => v
                .parse()
                .map(Some)
                .map_err(|e: ParseFsChoiceError| Error::Config(format!("{FS_ENV}: {e}"))),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(Error::Config(format!(
                "{FS_ENV} is not valid UTF-8; use auto, network or local"
            ))),
        }
    }

    /// `explicit` if given, else the environment's choice, else [`FsChoice::Auto`].
    pub fn resolve(explicit: Option<Self>) -> Result<Self> {
        match explicit {
            Some(c) => Ok(c),
            None => Ok(Self::from_env()?.unwrap_or_default()),
        }
    }
}

impl fmt::Display for FsChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown [`FsChoice`] name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown file system kind {0:?}; use auto, network or local")]
pub struct ParseFsChoiceError(String);

impl FromStr for FsChoice {
    type Err = ParseFsChoiceError;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "network" | "remote" | "share" => Ok(Self::Network),
            "local" => Ok(Self::Local),
            _ => Err(ParseFsChoiceError(s.to_owned())),
        }
    }
}

/// What detection found for a path, and what was decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsInfo {
    /// The kind the backend acts on: the detected kind unless the user chose otherwise.
    pub kind: FsKind,
    /// The kind detection found.
    pub detected: FsKind,
    /// The user's choice.
    pub choice: FsChoice,
    /// The file system type, as mountinfo names it (`ext4`, `nfs4`, `fuse.sshfs`), or the
    /// magic number in hex when only that is known, or `unknown`.
    pub fs_type: String,
    /// The mount point the path is reached through, when known.
    pub mount_point: Option<PathBuf>,
    /// The device id (`major:minor`) of that mount, when known.
    pub device: Option<(u32, u32)>,
}

impl FsInfo {
    /// Whether the backend must act as on a network file system.
    pub fn is_network(&self) -> bool {
        self.kind == FsKind::Network
    }

    /// A one-line description: `network (fuse.sshfs at /mnt/nas)`, with the override noted.
    pub fn describe(&self) -> String {
        let mut s = format!("{} ({}", self.kind, self.fs_type);
        if let Some(m) = &self.mount_point {
            s.push_str(&format!(" at {}", m.display()));
        }
        s.push(')');
        if self.choice != FsChoice::Auto {
            s.push_str(&format!(
                ", set by the user (detected: {})",
                self.detected.as_str()
            ));
        }
        s
    }

    /// The device id as `major:minor`, or `unknown`.
    pub fn device_id(&self) -> String {
        match self.device {
            Some((major, minor)) => format!("{major}:{minor}"),
            None => "unknown".to_owned(),
        }
    }
}

/// `statfs` magic numbers of network (and cluster) file systems, with their names.
pub const NETWORK_MAGICS: &[(u64, &str)] = &[
    (0x6969, "nfs"),
    (0x517B, "smb"),
    (0xFF53_4D42, "cifs"),
    (0xFE53_4D42, "smb2"),
    (0x0102_1997, "9p"),
    (0x5346_414F, "afs"),
    (0x6B41_4653, "afs"),
    (0x7375_7245, "coda"),
    (0x00C3_6400, "ceph"),
    (0x0BD0_0BD0, "lustre"),
    (0x4750_4653, "gpfs"),
    (0x564C, "ncp"),
    (0x0116_1970, "gfs2"),
    (0x7461_636F, "ocfs2"),
];

/// The `statfs` magic number of FUSE (and virtiofs, which is FUSE underneath).
pub const FUSE_MAGIC: u64 = 0x6573_5546;

/// File system type names (as in mountinfo) of network file systems.
pub const NETWORK_TYPES: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "9p",
    "afs",
    "coda",
    "ceph",
    "lustre",
    "gpfs",
    "virtiofs",
    "glusterfs",
    "ncpfs",
    "gfs2",
    "ocfs2",
    "davfs",
];

/// FUSE subtypes (`fuse.<subtype>`) that reach storage over a network.
pub const FUSE_NETWORK: &[&str] = &[
    "sshfs",
    "rclone",
    "s3fs",
    "glusterfs",
    "gcsfuse",
    "goofys",
    "davfs",
    "curlftpfs",
    "smbnetfs",
    "cephfs",
    "ceph-fuse",
    "juicefs",
    "moosefs",
    "mfs",
];

/// FUSE subtypes (`fuse.<subtype>`) over local storage: kernel locks and one page cache.
pub const FUSE_LOCAL: &[&str] = &[
    "mergerfs",
    "bindfs",
    "ntfs-3g",
    "ntfs3g",
    "exfat",
    "fuse-overlayfs",
    "squashfuse",
    "lxcfs",
    "encfs",
    "gocryptfs",
    "securefs",
    "unionfs",
];

/// The kind of a FUSE file system from its subtype: an unknown subtype counts as network
/// (FUSE is how most user-space network file systems are mounted).
pub fn fuse_kind(subtype: &str) -> FsKind {
    let sub = subtype.to_ascii_lowercase();
    if FUSE_LOCAL.contains(&sub.as_str()) {
        FsKind::Local
    } else {
        FsKind::Network
    }
}

/// Classifies a file system from what is known of it: the `statfs` magic number and the
/// mountinfo type name (`ext4`, `nfs4`, `fuse.sshfs`). Returns the kind and the type to show.
pub fn classify(magic: Option<u64>, mount_type: Option<&str>) -> (FsKind, String) {
    if let Some(t) = mount_type {
        let lower = t.to_ascii_lowercase();
        if let Some(sub) = lower.strip_prefix("fuse.") {
            return (fuse_kind(sub), t.to_owned());
        }
        if lower == "fuseblk" {
            // FUSE over a local block device (ntfs-3g, exfat).
            return (FsKind::Local, t.to_owned());
        }
        if lower == "fuse" {
            return (FsKind::Network, t.to_owned());
        }
        if NETWORK_TYPES.contains(&lower.as_str()) {
            return (FsKind::Network, t.to_owned());
        }
        if let Some(m) = magic
            && let Some((_, name)) = NETWORK_MAGICS.iter().find(|(n, _)| *n == m)
        {
            return (FsKind::Network, (*name).to_owned());
        }
        if magic == Some(FUSE_MAGIC) {
            return (FsKind::Network, t.to_owned());
        }
        return (FsKind::Local, t.to_owned());
    }
    match magic {
        Some(m) => {
            if let Some((_, name)) = NETWORK_MAGICS.iter().find(|(n, _)| *n == m) {
                (FsKind::Network, (*name).to_owned())
            } else if m == FUSE_MAGIC {
                (FsKind::Network, "fuse".to_owned())
            } else {
                (FsKind::Local, format!("{m:#x}"))
            }
        }
        None => (FsKind::Unknown, "unknown".to_owned()),
    }
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The device id's major number.
    pub major: u32,
    /// The device id's minor number.
    pub minor: u32,
    /// Where it is mounted (octal escapes decoded).
    pub mount_point: PathBuf,
    /// The file system type (`ext4`, `fuse.sshfs`).
    pub fs_type: String,
    /// The mount source (`server:/export`, `/dev/sda1`).
    pub source: String,
}

/// Decodes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (u32::from(bytes[i + 1] - b'0') << 6)
                | (u32::from(bytes[i + 2] - b'0') << 3)
                | u32::from(bytes[i + 3] - b'0');
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the text of `/proc/self/mountinfo`; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut l = left.split(' ');
            let _id = l.next()?;
            let _parent = l.next()?;
            let (major, minor) = l.next()?.split_once(':')?;
            let _root = l.next()?;
            let mount_point = unescape(l.next()?);
            let mut r = right.split(' ');
            let fs_type = r.next()?.to_owned();
            let source = unescape(r.next().unwrap_or(""));
            Some(MountEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                mount_point: PathBuf::from(mount_point),
                fs_type,
                source,
            })
        })
        .collect()
}

/// The mount that `path` (absolute, symbolic links resolved) is reached through: among the
/// mounts whose mount point contains it, those with the path's device id if any, the longest
/// mount point (the last one mounted when equal: it hides the earlier ones).
pub fn find_mount<'a>(
    entries: &'a [MountEntry],
    path: &Path,
    device: Option<(u32, u32)>,
) -> Option<&'a MountEntry> {
    let containing = || entries.iter().filter(|e| path.starts_with(&e.mount_point));
    let longest = |it: &mut dyn Iterator<Item = &'a MountEntry>| {
        let mut best: Option<&'a MountEntry> = None;
        for e in it {
            if best
                .is_none_or(|b| e.mount_point.as_os_str().len() >= b.mount_point.as_os_str().len())
            {
                best = Some(e);
            }
        }
        best
    };
    if let Some(dev) = device {
        let mut same_dev = containing().filter(|e| (e.major, e.minor) == dev);
        if let Some(e) = longest(&mut same_dev) {
            return Some(e);
        }
    }
    longest(&mut containing())
}

/// The nearest existing ancestor of `path` (itself if it exists), absolute and with symbolic
/// links resolved.
fn existing_ancestor(path: &Path) -> Option<PathBuf> {
    let mut p = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(path)
    };
    loop {
        if let Ok(c) = std::fs::canonicalize(&p) {
            return Some(c);
        }
        if !p.pop() {
            return None;
        }
    }
}

/// What the system says about `path`: magic number, mountinfo entry, device.
#[derive(Debug, Default)]
struct Probe {
    magic: Option<u64>,
    mount: Option<MountEntry>,
    device: Option<(u32, u32)>,
}

#[cfg(target_os = "linux")]
fn probe(path: &Path) -> Probe {
    use std::os::unix::fs::MetadataExt;
    let mut out = Probe::default();
    let Some(at) = existing_ancestor(path) else {
        return out;
    };
    match rustix::fs::statfs(&at) {
        // Magic numbers are 32-bit values stored in a signed word.
        Ok(st) => out.magic = Some((st.f_type as u64) & 0xFFFF_FFFF),
        Err(e) => tracing::debug!(path = %at.display(), error = %e, "statfs failed"),
    }
    if let Ok(meta) = std::fs::metadata(&at) {
        let dev = meta.dev();
        out.device = Some((rustix::fs::major(dev), rustix::fs::minor(dev)));
    }
    match std::fs::read_to_string("/proc/self/mountinfo") {
        Ok(text) => {
            let entries = parse_mountinfo(&text);
            out.mount = find_mount(&entries, &at, out.device).cloned();
        }
        Err(e) => tracing::debug!(error = %e, "cannot read /proc/self/mountinfo"),
    }
    out
}

#[cfg(not(target_os = "linux"))]
fn probe(path: &Path) -> Probe {
    let _ = existing_ancestor(path);
    Probe::default()
}

/// Detects the file system of `path` (or of its nearest existing ancestor) and applies the
/// user's choice (`choice`, else [`FS_ENV`], else detection).
///
/// # Errors
///
/// [`Error::Config`] when [`FS_ENV`] holds an unknown value.
pub fn detect(path: &Path, choice: Option<FsChoice>) -> Result<FsInfo> {
    let choice = FsChoice::resolve(choice)?;
    let probe = probe(path);
    let (detected, fs_type) = classify(
        probe.magic,
        probe.mount.as_ref().map(|m| m.fs_type.as_str()),
    );
    let kind = match choice {
        FsChoice::Auto => detected,
        FsChoice::Network => FsKind::Network,
        FsChoice::Local => FsKind::Local,
    };
    let device = probe
        .mount
        .as_ref()
        .map(|m| (m.major, m.minor))
        .or(probe.device);
    Ok(FsInfo {
        kind,
        detected,
        choice,
        fs_type,
        mount_point: probe.mount.map(|m| m.mount_point),
        device,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_numbers_of_the_issue_are_network() {
        for m in [
            0x6969u64,
            0x517B,
            0xFF53_4D42,
            0xFE53_4D42,
            0x0102_1997,
            0x5346_414F,
            0x7375_7245,
            0x00C3_6400,
            0x0BD0_0BD0,
            0x4750_4653,
        ] {
            assert_eq!(classify(Some(m), None).0, FsKind::Network, "{m:#x}");
        }
        assert_eq!(classify(Some(0x6969), None).1, "nfs");
    }

    #[test]
    fn local_magic_numbers_are_local() {
        for m in [
            0xEF53u64,
            0x5846_5342,
            0x9123_683E,
            0x0102_1994,
            0x794C_7630,
        ] {
            assert_eq!(classify(Some(m), None).0, FsKind::Local, "{m:#x}");
        }
        assert_eq!(classify(None, None), (FsKind::Unknown, "unknown".into()));
    }

    #[test]
    fn fuse_subtypes() {
        for t in [
            "fuse.sshfs",
            "fuse.rclone",
            "fuse.s3fs",
            "fuse.glusterfs",
            "fuse.whatever",
        ] {
            assert_eq!(
                classify(Some(FUSE_MAGIC), Some(t)).0,
                FsKind::Network,
                "{t}"
            );
        }
        for t in ["fuse.mergerfs", "fuse.bindfs", "fuseblk"] {
            assert_eq!(classify(Some(FUSE_MAGIC), Some(t)).0, FsKind::Local, "{t}");
        }
        // FUSE without a subtype, or a FUSE magic with no mountinfo: network.
        assert_eq!(classify(Some(FUSE_MAGIC), Some("fuse")).0, FsKind::Network);
        assert_eq!(classify(Some(FUSE_MAGIC), None).0, FsKind::Network);
        assert_eq!(
            classify(Some(FUSE_MAGIC), Some("virtiofs")).0,
            FsKind::Network
        );
    }

    #[test]
    fn mountinfo_type_names() {
        assert_eq!(classify(None, Some("nfs4")).0, FsKind::Network);
        assert_eq!(classify(Some(0xEF53), Some("ext4")).0, FsKind::Local);
        // A network magic wins over an unrecognised name.
        assert_eq!(classify(Some(0x6969), Some("odd")).0, FsKind::Network);
    }

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
45 22 0:40 / /mnt/nas rw,nosuid,nodev,relatime - fuse.sshfs localhost:/srv rw,user_id=0
46 22 0:41 / /mnt/nas2 rw,nosuid,nodev,relatime - fuse.sshfs localhost:/srv rw,user_id=0
47 45 0:50 / /mnt/nas/local\\040disk rw - ext4 /dev/sdb1 rw
48 22 0:52 / /srv/pool rw - fuse.mergerfs a:b rw
49 22 0:60 / /data rw - nfs4 server:/export rw
bad line
";

    #[test]
    fn mount_lookup_longest_prefix_and_device() {
        let e = parse_mountinfo(MOUNTINFO);
        assert_eq!(e.len(), 6);
        let m = find_mount(&e, Path::new("/mnt/nas/cache/db"), None).unwrap();
        assert_eq!(m.fs_type, "fuse.sshfs");
        assert_eq!((m.major, m.minor), (0, 40));
        // /mnt/nas2 is not inside /mnt/nas.
        let m = find_mount(&e, Path::new("/mnt/nas2/x"), None).unwrap();
        assert_eq!((m.major, m.minor), (0, 41));
        let m = find_mount(&e, Path::new("/mnt/nas/local disk/c"), None).unwrap();
        assert_eq!(m.fs_type, "ext4");
        let m = find_mount(&e, Path::new("/home/u"), None).unwrap();
        assert_eq!(m.mount_point, Path::new("/"));
        // The device id picks the mount even when the prefix would say otherwise.
        let m = find_mount(&e, Path::new("/mnt/nas/local disk/c"), Some((0, 40))).unwrap();
        assert_eq!(m.fs_type, "fuse.sshfs");
        let m = find_mount(&e, Path::new("/data/plex"), Some((0, 60))).unwrap();
        assert_eq!(classify(Some(0x6969), Some(&m.fs_type)).0, FsKind::Network);
        let m = find_mount(&e, Path::new("/srv/pool/c"), None).unwrap();
        assert_eq!(
            classify(Some(FUSE_MAGIC), Some(&m.fs_type)).0,
            FsKind::Local
        );
    }

    #[test]
    fn choice_parses_and_overrides() {
        assert_eq!("Network".parse::<FsChoice>(), Ok(FsChoice::Network));
        assert_eq!("local".parse::<FsChoice>(), Ok(FsChoice::Local));
        assert_eq!("auto".parse::<FsChoice>(), Ok(FsChoice::Auto));
        assert!("nfs".parse::<FsChoice>().is_err());
        let dir = std::env::temp_dir();
        let info = detect(&dir, Some(FsChoice::Network)).unwrap();
        assert!(info.is_network());
        assert!(
            info.describe().contains("set by the user"),
            "{}",
            info.describe()
        );
        let info = detect(&dir, Some(FsChoice::Local)).unwrap();
        assert_eq!(info.kind, FsKind::Local);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn detects_this_machine_and_missing_paths() {
        let info = detect(Path::new("/proc/self/no/such/dir"), Some(FsChoice::Auto)).unwrap();
        assert_ne!(info.detected, FsKind::Unknown);
        assert!(info.mount_point.is_some());
    }
}
