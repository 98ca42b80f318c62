// ALE's own C++ loop: the baseline that agentry's binding (envs/examples/atari_speed.rs)
// and ale-py's loop (envs/examples/atari_speed.py) are compared with. Same workload:
// Breakout, a uniformly random action from the minimal set every frame, one frame per
// act(), sticky actions 0.25, the RGB screen read after every frame, one thread.
//
//   benches/atari/build.sh [OUT]                 # default: benches/atari/ale_loop
//   ale_loop ROM [FRAMES] [--no-screen]
//
// prints `ALE C++ loop: N frames/s (Breakout, FRAMES frames)`. `--no-screen` skips the
// screen read, to show what reading the screen costs.

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <random>
#include <string>
#include <vector>

#include "ale/ale_interface.hpp"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s ROM [FRAMES] [--no-screen]\n", argv[0]);
    return 2;
  }
  const char* rom = argv[1];
  long long frames = 200000;
  bool read_screen = true;
  for (int i = 2; i < argc; i++) {
    if (std::strcmp(argv[i], "--no-screen") == 0) {
      read_screen = false;
    } else {
      char* end = nullptr;
      frames = std::strtoll(argv[i], &end, 10);
      if (*end != '\0' || frames <= 0) {
        std::fprintf(stderr, "bad frame count: %s\n", argv[i]);
        return 2;
      }
    }
  }
  try {
    ale::Logger::setMode(ale::Logger::Error);
    ale::ALEInterface ale;
    ale.setInt("random_seed", 0);
    ale.setFloat("repeat_action_probability", 0.25f);
    ale.loadROM(rom);
    const ale::ActionVect actions = ale.getMinimalActionSet();
    std::vector<unsigned char> screen(ale.getScreen().height() * ale.getScreen().width() * 3);
    // The draw costs a few nanoseconds against tens of microseconds per frame.
    std::mt19937_64 rng(0);
    std::uniform_int_distribution<std::size_t> pick(0, actions.size() - 1);
    ale.reset_game();
    const auto start = std::chrono::steady_clock::now();
    for (long long i = 0; i < frames; i++) {
      ale.act(actions[pick(rng)], 1.0f);
      if (read_screen) {
        ale.getScreenRGB(screen);  // a call into libale.a: not optimised away
      }
      if (ale.game_over(true)) ale.reset_game();
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("ALE C++ loop%s: %.0f frames/s (Breakout, %lld frames)\n",
                read_screen ? "" : " (no screen read)", frames / secs, frames);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
