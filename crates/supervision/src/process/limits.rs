//! Resource limits a process child gets before exec (`setrlimit` and `nice`).

/// Resource limits for a process child, applied between fork and exec; `None` (the
/// default) leaves a limit as this program has it.
///
/// # Examples
///
/// ```
/// use supervision::process::Limits;
///
/// let limits = Limits::new().open_files(256).cpu_seconds(60).nice(10);
/// assert_eq!(limits.get_open_files(), Some(256));
/// assert_eq!(limits.get_address_space_mb(), None);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub(crate) address_space_mb: Option<u64>,
    pub(crate) open_files: Option<u64>,
    pub(crate) cpu_seconds: Option<u64>,
    pub(crate) nice: Option<i32>,
}

impl Limits {
    /// No limit set.
    pub fn new() -> Self {
        Limits::default()
    }

    /// Virtual address space, in MiB (`RLIMIT_AS`, soft and hard).
    pub fn address_space_mb(mut self, mb: u64) -> Self {
        self.address_space_mb = Some(mb);
        self
    }

    /// Open file descriptors (`RLIMIT_NOFILE`, soft and hard).
    pub fn open_files(mut self, n: u64) -> Self {
        self.open_files = Some(n);
        self
    }

    /// CPU time, in seconds (`RLIMIT_CPU`, soft and hard): SIGXCPU, then SIGKILL.
    pub fn cpu_seconds(mut self, seconds: u64) -> Self {
        self.cpu_seconds = Some(seconds);
        self
    }

    /// Scheduling niceness (−20–19; lowering it needs privileges).
    pub fn nice(mut self, nice: i32) -> Self {
        self.nice = Some(nice);
        self
    }

    /// The address-space limit, in MiB.
    pub fn get_address_space_mb(&self) -> Option<u64> {
        self.address_space_mb
    }

    /// The open-files limit.
    pub fn get_open_files(&self) -> Option<u64> {
        self.open_files
    }

    /// The CPU-time limit, in seconds.
    pub fn get_cpu_seconds(&self) -> Option<u64> {
        self.cpu_seconds
    }

    /// The niceness.
    pub fn get_nice(&self) -> Option<i32> {
        self.nice
    }
}
