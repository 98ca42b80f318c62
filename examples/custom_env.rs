//! A custom environment: a corridor the agent walks to its right end.
//!
//! Run with `cargo run --example custom_env`; it prints the first episode's steps and
//! then the mean episode length of 8 vectorised copies that mostly walk right.

use agentry::envs::vector::{SyncVecEnv, VecAction, VecEnv};
use agentry::envs::{Action, BoxSpace, Env, EnvError, EnvExt, Out, Space, Step};

/// Position 0..len; actions 0 = left, 1 = right; +1 and `terminated` at the right end.
struct Corridor {
    len: u32,
    pos: u32,
    obs_space: Space,
    act_space: Space,
}

impl Corridor {
    fn new(len: u32) -> Self {
        Corridor {
            len,
            pos: 0,
            obs_space: Space::Box(BoxSpace::new(vec![0.0], vec![len as f32])),
            act_space: Space::Discrete(2),
        }
    }
}

impl Env for Corridor {
    fn observation_space(&self) -> &Space {
        &self.obs_space
    }
    fn action_space(&self) -> &Space {
        &self.act_space
    }
    fn reset_into(&mut self, _seed: Option<u64>, out: Out<'_>) -> Result<(), EnvError> {
        self.pos = 0;
        out.obs.f32()?[0] = 0.0;
        Ok(())
    }
    fn step_into(&mut self, action: Action<'_>, out: Out<'_>) -> Result<Step, EnvError> {
        self.act_space.check(&action)?; // an invalid action is an error, never a panic
        match action {
            Action::Discrete(0) => self.pos = self.pos.saturating_sub(1),
            _ => self.pos += 1,
        }
        out.obs.f32()?[0] = self.pos as f32;
        let arrived = self.pos == self.len;
        Ok(Step {
            reward: if arrived { 1.0 } else { -0.01 },
            terminated: arrived,
            truncated: false,
        })
    }
    fn render_ansi(&self) -> String {
        (0..=self.len)
            .map(|i| if i == self.pos { 'A' } else { '.' })
            .collect()
    }
}

fn main() -> Result<(), EnvError> {
    // Gymnasium's owned API works on any Env.
    let mut env = Corridor::new(3);
    let (obs, _info) = env.reset(Some(0))?;
    println!("reset: {obs:?} {}", env.render_ansi());
    loop {
        let t = env.step(Action::Discrete(1))?;
        println!(
            "step: obs {:?} reward {} terminated {}  {}",
            t.obs,
            t.reward,
            t.terminated,
            env.render_ansi()
        );
        if t.terminated || t.truncated {
            break;
        }
    }
    assert!(env.step(Action::Discrete(5)).is_err());

    // So do the vector environments (and the wrappers).
    let copies: Vec<Box<dyn Env>> = (0..8)
        .map(|_| Box::new(Corridor::new(5)) as Box<dyn Env>)
        .collect();
    let mut envs = SyncVecEnv::new(copies)?;
    envs.reset(Some(1))?;
    let (mut episodes, mut steps) = (0u64, 0u64);
    for t in 0..2000usize {
        // Mostly right, sometimes left.
        let actions: Vec<usize> = (0..8).map(|i| usize::from((t + i) % 4 != 0)).collect();
        let out = envs.step(VecAction::Discrete(&actions))?;
        for i in 0..8 {
            if let Some((_ret, len)) = out.finished_episode(i) {
                episodes += 1;
                steps += len;
            }
        }
    }
    println!(
        "{episodes} episodes, mean length {:.1}",
        steps as f64 / episodes.max(1) as f64
    );
    Ok(())
}
