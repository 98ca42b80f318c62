// ALE's own C++ loop: the baseline that agentry's binding (envs/examples/atari_speed.rs)
// and ale-py's loop (envs/examples/atari_speed.py) are compared with. Same workload:
// Breakout, a uniformly random action from the minimal set every frame, one frame per
// act(), sticky actions 0.25, the RGB screen read after every frame, one thread.
//
//   benches/atari/build.sh [OUT]                 # default: benches/atari/ale_loop
//   ale_loop ROM [FRAMES] [--screen=ptr|vector|none] [--seed=S]
//
// prints `ALE C++ loop (screen: ptr): N frames/s (Breakout, FRAMES frames)`.
// How the screen is read:
// - ptr (default): the palette lookup into a caller's buffer
//   (`ColourPalette::applyPaletteRGB(uint8_t*, ...)`), which is what agentry's shim and
//   ale-py's `getScreenRGB(array)` both call;
// - vector: the public `ALEInterface::getScreenRGB(std::vector&)`, whose overload of the
//   lookup resizes the vector and indexes it: measurably slower (BENCHMARKS.md);
// - none: no screen read, to show what reading costs.
// --seed (default 0) seeds ALE and the action draws: other seeds play other games.

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

enum class Screen { Ptr, Vector, None };

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s ROM [FRAMES] [--screen=ptr|vector|none] [--seed=S]\n",
                 argv[0]);
    return 2;
  }
  const char* rom = argv[1];
  long long frames = 200000;
  Screen mode = Screen::Ptr;
  const char* mode_name = "ptr";
  int seed = 0;
  for (int i = 2; i < argc; i++) {
    if (std::strncmp(argv[i], "--seed=", 7) == 0) {
      seed = std::atoi(argv[i] + 7);
    } else if (std::strncmp(argv[i], "--screen=", 9) == 0) {
      mode_name = argv[i] + 9;
      if (std::strcmp(mode_name, "ptr") == 0) {
        mode = Screen::Ptr;
      } else if (std::strcmp(mode_name, "vector") == 0) {
        mode = Screen::Vector;
      } else if (std::strcmp(mode_name, "none") == 0) {
        mode = Screen::None;
      } else {
        std::fprintf(stderr, "unknown screen mode: %s\n", mode_name);
        return 2;
      }
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
    ale.setInt("random_seed", seed);
    ale.setFloat("repeat_action_probability", 0.25f);
    ale.loadROM(rom);
    const ale::ActionVect actions = ale.getMinimalActionSet();
    const ale::ALEScreen& ale_screen = ale.getScreen();
    const std::size_t pixels = ale_screen.height() * ale_screen.width();
    std::vector<unsigned char> screen(pixels * 3);
    // The draw costs a few nanoseconds against tens of microseconds per frame.
    std::mt19937_64 rng(static_cast<std::uint64_t>(seed));
    std::uniform_int_distribution<std::size_t> pick(0, actions.size() - 1);
    ale.reset_game();
    const auto start = std::chrono::steady_clock::now();
    for (long long i = 0; i < frames; i++) {
      ale.act(actions[pick(rng)], 1.0f);
      // Both reads are calls into libale.a, which the compiler cannot drop.
      if (mode == Screen::Ptr) {
        ale.theOSystem->colourPalette().applyPaletteRGB(
            screen.data(), ale.environment->getScreen().getArray(), pixels);
      } else if (mode == Screen::Vector) {
        ale.getScreenRGB(screen);
      }
      if (ale.game_over(true)) ale.reset_game();
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("ALE C++ loop (screen: %s): %.0f frames/s (Breakout, %lld frames)\n", mode_name,
                frames / secs, frames);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
