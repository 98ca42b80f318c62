//! A safe handle on one Arcade Learning Environment emulator (`ale::ALEInterface`).

use std::ffi::{CStr, CString, c_char, c_int, c_long};
use std::path::Path;
use std::ptr::NonNull;

use crate::error::{EnvError, Result};

/// The C shim's opaque handle (`src/atari/shim.cpp`).
#[repr(C)]
struct AgentryAle {
    _private: [u8; 0],
}

unsafe extern "C" {
    fn agentry_ale_new() -> *mut AgentryAle;
    fn agentry_ale_free(h: *mut AgentryAle);
    fn agentry_ale_last_error(h: *const AgentryAle) -> *const c_char;
    fn agentry_ale_set_int(h: *mut AgentryAle, key: *const c_char, value: i32) -> c_int;
    fn agentry_ale_set_float(h: *mut AgentryAle, key: *const c_char, value: f32) -> c_int;
    fn agentry_ale_set_bool(h: *mut AgentryAle, key: *const c_char, value: c_int) -> c_int;
    fn agentry_ale_set_string(
        h: *mut AgentryAle,
        key: *const c_char,
        value: *const c_char,
    ) -> c_int;
    fn agentry_ale_load_rom(h: *mut AgentryAle, path: *const c_char) -> c_int;
    fn agentry_ale_reset_game(h: *mut AgentryAle) -> c_int;
    fn agentry_ale_act(h: *mut AgentryAle, action: i32, strength: f32, reward: *mut i32) -> c_int;
    fn agentry_ale_game_over(h: *const AgentryAle, with_truncation: c_int) -> c_int;
    fn agentry_ale_game_truncated(h: *const AgentryAle) -> c_int;
    fn agentry_ale_lives(h: *mut AgentryAle) -> i32;
    fn agentry_ale_frame_number(h: *const AgentryAle) -> i32;
    fn agentry_ale_episode_frame_number(h: *const AgentryAle) -> i32;
    fn agentry_ale_screen_width(h: *const AgentryAle) -> usize;
    fn agentry_ale_screen_height(h: *const AgentryAle) -> usize;
    fn agentry_ale_screen_rgb(h: *mut AgentryAle, out: *mut u8, cap: usize) -> c_int;
    fn agentry_ale_screen_grayscale(h: *mut AgentryAle, out: *mut u8, cap: usize) -> c_int;
    fn agentry_ale_minimal_action_set(h: *mut AgentryAle, out: *mut i32, cap: usize) -> c_long;
    fn agentry_ale_legal_action_set(h: *mut AgentryAle, out: *mut i32, cap: usize) -> c_long;
    fn agentry_ale_available_modes(h: *mut AgentryAle, out: *mut i32, cap: usize) -> c_long;
    fn agentry_ale_available_difficulties(h: *mut AgentryAle, out: *mut i32, cap: usize) -> c_long;
    fn agentry_ale_set_mode(h: *mut AgentryAle, mode: i32) -> c_int;
    fn agentry_ale_set_difficulty(h: *mut AgentryAle, difficulty: i32) -> c_int;
}

/// Number of actions in ALE's full (legal) action set.
pub const NUM_FULL_ACTIONS: usize = 18;

/// ALE's names of its 18 actions, by index.
pub const ACTION_NAMES: [&str; NUM_FULL_ACTIONS] = [
    "NOOP",
    "FIRE",
    "UP",
    "RIGHT",
    "LEFT",
    "DOWN",
    "UPRIGHT",
    "UPLEFT",
    "DOWNRIGHT",
    "DOWNLEFT",
    "UPFIRE",
    "RIGHTFIRE",
    "LEFTFIRE",
    "DOWNFIRE",
    "UPRIGHTFIRE",
    "UPLEFTFIRE",
    "DOWNRIGHTFIRE",
    "DOWNLEFTFIRE",
];

/// One emulator. Dropping it frees the emulator.
///
/// Every method returns ALE's failures (C++ exceptions caught in the shim) as
/// [`EnvError::Invalid`] values; none panics. Settings (`set_*`) take effect at the next
/// [`Ale::load_rom`], as in ALE.
#[derive(Debug)]
pub struct Ale {
    h: NonNull<AgentryAle>,
}

// SAFETY: an `ALEInterface` has no thread affinity (ale-py's vector environment steps
// instances on worker threads); `Ale` owns its instance and is not `Sync`, so no two
// threads touch one emulator at once.
unsafe impl Send for Ale {}

impl Drop for Ale {
    fn drop(&mut self) {
        // SAFETY: `h` came from `agentry_ale_new` and is freed only here.
        unsafe { agentry_ale_free(self.h.as_ptr()) }
    }
}

fn c_string(what: &str, s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| EnvError::Invalid(format!("{what} `{s}` contains a NUL byte")))
}

impl Ale {
    /// A new emulator with ALE's default settings (and its log limited to errors).
    pub fn new() -> Result<Self> {
        // SAFETY: no preconditions; null means failure.
        let h = unsafe { agentry_ale_new() };
        NonNull::new(h)
            .map(|h| Ale { h })
            .ok_or_else(|| EnvError::Invalid("ALE: could not create an emulator".into()))
    }

    fn ptr(&self) -> *mut AgentryAle {
        self.h.as_ptr()
    }

    /// Turn the shim's status code into a result carrying ALE's message.
    fn check(&self, status: c_int, what: &str) -> Result<()> {
        if status == 0 {
            return Ok(());
        }
        // SAFETY: the shim returns a NUL-terminated string owned by the handle, valid
        // until the next call on it; it is copied at once.
        let msg = unsafe { CStr::from_ptr(agentry_ale_last_error(self.ptr())) }
            .to_string_lossy()
            .into_owned();
        Err(EnvError::Invalid(format!("ALE {what}: {msg}")))
    }

    /// Call one of the shim's list getters, growing the buffer if needed.
    fn list(
        &self,
        what: &str,
        f: unsafe extern "C" fn(*mut AgentryAle, *mut i32, usize) -> c_long,
    ) -> Result<Vec<i32>> {
        let mut out = vec![0i32; 32];
        loop {
            // SAFETY: `out` holds `out.len()` values and the shim writes at most that many.
            let n = unsafe { f(self.ptr(), out.as_mut_ptr(), out.len()) };
            let Ok(n) = usize::try_from(n) else {
                self.check(-1, what)?;
                return Ok(Vec::new());
            };
            if n <= out.len() {
                out.truncate(n);
                return Ok(out);
            }
            out.resize(n, 0);
        }
    }

    /// Set an integer setting (e.g. `random_seed`, `max_num_frames_per_episode`).
    pub fn set_int(&mut self, key: &str, value: i32) -> Result<()> {
        let k = c_string("setting", key)?;
        // SAFETY: valid handle and NUL-terminated key.
        let s = unsafe { agentry_ale_set_int(self.ptr(), k.as_ptr(), value) };
        self.check(s, &format!("setInt({key})"))
    }

    /// Set a real setting (e.g. `repeat_action_probability`).
    pub fn set_float(&mut self, key: &str, value: f32) -> Result<()> {
        let k = c_string("setting", key)?;
        // SAFETY: as in `set_int`.
        let s = unsafe { agentry_ale_set_float(self.ptr(), k.as_ptr(), value) };
        self.check(s, &format!("setFloat({key})"))
    }

    /// Set a boolean setting (e.g. `truncate_on_loss_of_life`).
    pub fn set_bool(&mut self, key: &str, value: bool) -> Result<()> {
        let k = c_string("setting", key)?;
        // SAFETY: as in `set_int`.
        let s = unsafe { agentry_ale_set_bool(self.ptr(), k.as_ptr(), c_int::from(value)) };
        self.check(s, &format!("setBool({key})"))
    }

    /// Set a text setting.
    pub fn set_string(&mut self, key: &str, value: &str) -> Result<()> {
        let k = c_string("setting", key)?;
        let v = c_string("value", value)?;
        // SAFETY: as in `set_int`.
        let s = unsafe { agentry_ale_set_string(self.ptr(), k.as_ptr(), v.as_ptr()) };
        self.check(s, &format!("setString({key})"))
    }

    /// Load a ROM file, applying the settings made so far (this also resets the game).
    pub fn load_rom(&mut self, path: &Path) -> Result<()> {
        let text = path.to_str().ok_or_else(|| {
            EnvError::Io(format!("ROM path {} is not valid UTF-8", path.display()))
        })?;
        let p = c_string("ROM path", text)?;
        // SAFETY: valid handle and NUL-terminated path.
        let s = unsafe { agentry_ale_load_rom(self.ptr(), p.as_ptr()) };
        self.check(s, "loadROM")
    }

    /// Start a new episode (ALE's `reset_game`).
    pub fn reset_game(&mut self) -> Result<()> {
        // SAFETY: valid handle.
        let s = unsafe { agentry_ale_reset_game(self.ptr()) };
        self.check(s, "reset_game")
    }

    /// Emulate one frame with ALE action `action` (0..18, an index into
    /// [`ACTION_NAMES`]) at paddle strength `strength`; returns the frame's reward.
    #[inline]
    pub fn act(&mut self, action: usize, strength: f32) -> Result<i32> {
        if action >= NUM_FULL_ACTIONS {
            return Err(EnvError::InvalidAction {
                action: action.to_string(),
                space: format!("ALE actions 0..{NUM_FULL_ACTIONS}"),
            });
        }
        let mut reward = 0;
        // SAFETY: valid handle; `reward` is a valid out-pointer.
        let s = unsafe { agentry_ale_act(self.ptr(), action as i32, strength, &mut reward) };
        self.check(s, "act")?;
        Ok(reward)
    }

    /// Whether the episode is over; `with_truncation` also counts the frame limit
    /// (`max_num_frames_per_episode`).
    #[inline]
    pub fn game_over(&self, with_truncation: bool) -> bool {
        // SAFETY: valid handle.
        unsafe { agentry_ale_game_over(self.ptr(), c_int::from(with_truncation)) != 0 }
    }

    /// Whether the episode hit the frame limit.
    #[inline]
    pub fn game_truncated(&self) -> bool {
        // SAFETY: valid handle.
        unsafe { agentry_ale_game_truncated(self.ptr()) != 0 }
    }

    /// Lives left (0 for games without lives).
    #[inline]
    pub fn lives(&self) -> i32 {
        // SAFETY: valid handle.
        unsafe { agentry_ale_lives(self.ptr()) }
    }

    /// Frames emulated since the ROM was loaded.
    pub fn frame_number(&self) -> i32 {
        // SAFETY: valid handle.
        unsafe { agentry_ale_frame_number(self.ptr()) }
    }

    /// Frames emulated in this episode.
    pub fn episode_frame_number(&self) -> i32 {
        // SAFETY: valid handle.
        unsafe { agentry_ale_episode_frame_number(self.ptr()) }
    }

    /// The screen's `(height, width)` in pixels (210 × 160 for every game).
    pub fn screen_shape(&self) -> (usize, usize) {
        // SAFETY: valid handle.
        unsafe {
            (
                agentry_ale_screen_height(self.ptr()),
                agentry_ale_screen_width(self.ptr()),
            )
        }
    }

    /// Write the screen as RGB, row-major, `height × width × 3` bytes, into `out`.
    #[inline]
    pub fn screen_rgb(&self, out: &mut [u8]) -> Result<()> {
        let (h, w) = self.screen_shape();
        if out.len() != h * w * 3 {
            return Err(EnvError::Buffer(format!(
                "RGB screen needs {} bytes, the buffer holds {}",
                h * w * 3,
                out.len()
            )));
        }
        // SAFETY: `out` holds `out.len()` bytes and the shim writes at most that many.
        let s = unsafe { agentry_ale_screen_rgb(self.ptr(), out.as_mut_ptr(), out.len()) };
        self.check(s, "getScreenRGB")
    }

    /// Write the screen as grayscale, row-major, `height × width` bytes, into `out`.
    #[inline]
    pub fn screen_grayscale(&self, out: &mut [u8]) -> Result<()> {
        let (h, w) = self.screen_shape();
        if out.len() != h * w {
            return Err(EnvError::Buffer(format!(
                "grayscale screen needs {} bytes, the buffer holds {}",
                h * w,
                out.len()
            )));
        }
        // SAFETY: as in `screen_rgb`.
        let s = unsafe { agentry_ale_screen_grayscale(self.ptr(), out.as_mut_ptr(), out.len()) };
        self.check(s, "getScreenGrayscale")
    }

    /// The actions that matter in the loaded game, as ALE action indices.
    pub fn minimal_action_set(&self) -> Result<Vec<usize>> {
        Ok(self
            .list("getMinimalActionSet", agentry_ale_minimal_action_set)?
            .into_iter()
            .map(|a| a as usize)
            .collect())
    }

    /// All 18 actions, as ALE action indices.
    pub fn legal_action_set(&self) -> Result<Vec<usize>> {
        Ok(self
            .list("getLegalActionSet", agentry_ale_legal_action_set)?
            .into_iter()
            .map(|a| a as usize)
            .collect())
    }

    /// The game modes the loaded game offers.
    pub fn available_modes(&self) -> Result<Vec<i32>> {
        self.list("getAvailableModes", agentry_ale_available_modes)
    }

    /// The difficulties the loaded game offers.
    pub fn available_difficulties(&self) -> Result<Vec<i32>> {
        self.list(
            "getAvailableDifficulties",
            agentry_ale_available_difficulties,
        )
    }

    /// Switch to game mode `mode` (one of [`Ale::available_modes`]); resets the game.
    pub fn set_mode(&mut self, mode: i32) -> Result<()> {
        // SAFETY: valid handle.
        let s = unsafe { agentry_ale_set_mode(self.ptr(), mode) };
        self.check(s, &format!("setMode({mode})"))
    }

    /// Switch to difficulty `difficulty` (one of [`Ale::available_difficulties`]).
    pub fn set_difficulty(&mut self, difficulty: i32) -> Result<()> {
        // SAFETY: valid handle.
        let s = unsafe { agentry_ale_set_difficulty(self.ptr(), difficulty) };
        self.check(s, &format!("setDifficulty({difficulty})"))
    }
}
