// agentry's C interface to the Arcade Learning Environment's C++ `ALEInterface`.
//
// Every function catches C++ exceptions (none may cross into Rust) and reports failure
// through its return value; the message of the last failure is kept in the handle and
// read with `agentry_ale_last_error`. Functions that fill a caller's buffer take its
// capacity and never write past it. Compiled by envs/build.rs only with the `atari`
// feature.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "ale/ale_interface.hpp"

struct AgentryAle {
  ale::ALEInterface ale;
  std::string error;
};

namespace {

// Run `f`, turning an exception into -1 and a stored message.
template <typename F>
int guarded(AgentryAle* h, F&& f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    h->error = e.what();
  } catch (...) {
    h->error = "unknown C++ exception";
  }
  if (h->error.empty()) h->error = "ALE error (no message)";
  return -1;
}

template <typename T>
std::size_t copy_out(const std::vector<T>& v, int32_t* out, std::size_t cap) {
  for (std::size_t i = 0; i < v.size() && i < cap; i++) out[i] = static_cast<int32_t>(v[i]);
  return v.size();
}

}  // namespace

extern "C" {

// A new emulator with ALE's default settings, or null if it cannot be created.
AgentryAle* agentry_ale_new(void) {
  try {
    // ALE logs every ROM load to stderr; keep only errors.
    ale::Logger::setMode(ale::Logger::Error);
    return new AgentryAle();
  } catch (...) {
    return nullptr;
  }
}

void agentry_ale_free(AgentryAle* h) { delete h; }

// The message of the last failure (empty if none); valid until the next call on `h`.
const char* agentry_ale_last_error(const AgentryAle* h) { return h->error.c_str(); }

int agentry_ale_set_int(AgentryAle* h, const char* key, int32_t value) {
  return guarded(h, [&] { h->ale.setInt(key, value); });
}

int agentry_ale_set_float(AgentryAle* h, const char* key, float value) {
  return guarded(h, [&] { h->ale.setFloat(key, value); });
}

int agentry_ale_set_bool(AgentryAle* h, const char* key, int value) {
  return guarded(h, [&] { h->ale.setBool(key, value != 0); });
}

int agentry_ale_set_string(AgentryAle* h, const char* key, const char* value) {
  return guarded(h, [&] { h->ale.setString(key, value); });
}

int agentry_ale_load_rom(AgentryAle* h, const char* path) {
  return guarded(h, [&] {
    // ALE does not check that the file exists before parsing it.
    std::filesystem::path p(path);
    if (!std::filesystem::is_regular_file(p)) {
      throw std::runtime_error(std::string("ROM file not found: ") + path);
    }
    if (!ale::ALEInterface::isSupportedROM(p).has_value()) {
      throw std::runtime_error(std::string("not a ROM that ALE supports (unknown MD5): ") + path);
    }
    h->ale.loadROM(p);
  });
}

int agentry_ale_reset_game(AgentryAle* h) {
  return guarded(h, [&] { h->ale.reset_game(); });
}

// One emulator frame with `action` (an index into the legal action set, 0..18) at
// paddle strength `strength` in [-1, 1]; the reward goes to `*reward`.
int agentry_ale_act(AgentryAle* h, int32_t action, float strength, int32_t* reward) {
  return guarded(h, [&] {
    if (action < 0 || action >= static_cast<int32_t>(ale::PLAYER_B_NOOP)) {
      throw std::runtime_error("action out of range 0..17");
    }
    *reward = h->ale.act(static_cast<ale::Action>(action), strength);
  });
}

int agentry_ale_game_over(const AgentryAle* h, int with_truncation) {
  return h->ale.game_over(with_truncation != 0) ? 1 : 0;
}

int agentry_ale_game_truncated(const AgentryAle* h) { return h->ale.game_truncated() ? 1 : 0; }

int32_t agentry_ale_lives(AgentryAle* h) { return h->ale.lives(); }

int32_t agentry_ale_frame_number(const AgentryAle* h) { return h->ale.getFrameNumber(); }

int32_t agentry_ale_episode_frame_number(const AgentryAle* h) {
  return h->ale.getEpisodeFrameNumber();
}

std::size_t agentry_ale_screen_width(const AgentryAle* h) {
  return h->ale.getScreen().width();
}

std::size_t agentry_ale_screen_height(const AgentryAle* h) {
  return h->ale.getScreen().height();
}

// Write the screen as RGB (height × width × 3 bytes) into `out`, which holds `cap` bytes.
int agentry_ale_screen_rgb(AgentryAle* h, uint8_t* out, std::size_t cap) {
  return guarded(h, [&] {
    const ale::ALEScreen& screen = h->ale.environment->getScreen();
    std::size_t n = screen.width() * screen.height();
    if (cap < 3 * n) throw std::runtime_error("RGB buffer too small");
    h->ale.theOSystem->colourPalette().applyPaletteRGB(out, screen.getArray(), n);
  });
}

// Write the screen as grayscale (height × width bytes) into `out`, which holds `cap` bytes.
int agentry_ale_screen_grayscale(AgentryAle* h, uint8_t* out, std::size_t cap) {
  return guarded(h, [&] {
    const ale::ALEScreen& screen = h->ale.environment->getScreen();
    std::size_t n = screen.width() * screen.height();
    if (cap < n) throw std::runtime_error("grayscale buffer too small");
    h->ale.theOSystem->colourPalette().applyPaletteGrayscale(out, screen.getArray(), n);
  });
}

// The following write up to `cap` values into `out` and return how many there are
// (call again with a larger buffer if that is more than `cap`); -1 on failure.
long agentry_ale_minimal_action_set(AgentryAle* h, int32_t* out, std::size_t cap) {
  long n = -1;
  guarded(h, [&] { n = static_cast<long>(copy_out(h->ale.getMinimalActionSet(), out, cap)); });
  return n;
}

long agentry_ale_legal_action_set(AgentryAle* h, int32_t* out, std::size_t cap) {
  long n = -1;
  guarded(h, [&] { n = static_cast<long>(copy_out(h->ale.getLegalActionSet(), out, cap)); });
  return n;
}

long agentry_ale_available_modes(AgentryAle* h, int32_t* out, std::size_t cap) {
  long n = -1;
  guarded(h, [&] { n = static_cast<long>(copy_out(h->ale.getAvailableModes(), out, cap)); });
  return n;
}

long agentry_ale_available_difficulties(AgentryAle* h, int32_t* out, std::size_t cap) {
  long n = -1;
  guarded(h, [&] {
    n = static_cast<long>(copy_out(h->ale.getAvailableDifficulties(), out, cap));
  });
  return n;
}

int agentry_ale_set_mode(AgentryAle* h, int32_t mode) {
  return guarded(h, [&] {
    if (mode < 0) throw std::runtime_error("negative mode");
    h->ale.setMode(static_cast<ale::game_mode_t>(mode));
  });
}

int agentry_ale_set_difficulty(AgentryAle* h, int32_t difficulty) {
  return guarded(h, [&] {
    if (difficulty < 0) throw std::runtime_error("negative difficulty");
    h->ale.setDifficulty(static_cast<ale::difficulty_t>(difficulty));
  });
}

}  // extern "C"
