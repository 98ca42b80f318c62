//! The game of tic-tac-toe on its own, without the environment: a [`Board`], its rules,
//! and perfect play from a solved table ([`best_moves`], [`value`], [`score`]).
//!
//! Cells are numbered row-major, `cell = 3 * row + col`:
//!
//! ```text
//!  0 | 1 | 2
//! ---+---+---
//!  3 | 4 | 5
//! ---+---+---
//!  6 | 7 | 8
//! ```
//!
//! X always moves first. A [`Board`] can only hold positions reachable in a real game
//! (built move by move with [`Board::play`], or checked by [`Board::from_cells`] and
//! parsing), so every board has an entry in the solved table.
//!
//! ```
//! use agentry_envs::tictactoe::game::{best_moves, value, Board, Outcome, Player};
//!
//! let mut board = Board::new();
//! assert_eq!(value(&board), 0); // perfect play from the start is a draw
//! board.play(4).unwrap(); // X takes the centre
//! assert_eq!(board.to_move(), Player::O);
//! // Against the centre only the corners hold the draw.
//! assert_eq!(best_moves(&board).iter().collect::<Vec<_>>(), vec![0, 2, 6, 8]);
//!
//! let won: Board = "XXX OO. ...".parse().unwrap();
//! assert_eq!(won.outcome(), Some(Outcome::Win(Player::X)));
//! assert!(won.legal_moves().is_empty());
//! ```
//!
//! The table is built lazily, once per process (a few milliseconds), and lookups are O(1)
//! and allocate nothing.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use rand::{Rng, RngExt};
use thiserror::Error;

/// The number of cells.
pub const CELLS: usize = 9;

/// The eight winning lines (rows, columns, diagonals) as cell indices.
pub const LINES: [[usize; 3]; 8] = [
    [0, 1, 2],
    [3, 4, 5],
    [6, 7, 8],
    [0, 3, 6],
    [1, 4, 7],
    [2, 5, 8],
    [0, 4, 8],
    [2, 4, 6],
];

/// The winning lines as bit masks over cells.
const LINE_MASKS: [u16; 8] = {
    let mut masks = [0u16; 8];
    let mut i = 0;
    while i < 8 {
        masks[i] = (1 << LINES[i][0]) | (1 << LINES[i][1]) | (1 << LINES[i][2]);
        i += 1;
    }
    masks
};

const ALL_CELLS: u16 = (1 << CELLS) - 1;

/// One of the two players.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Player {
    /// Moves first.
    X,
    /// Moves second.
    O,
}

impl Player {
    /// The other player.
    #[inline]
    pub fn other(self) -> Player {
        match self {
            Player::X => Player::O,
            Player::O => Player::X,
        }
    }

    /// `'X'` or `'O'`.
    pub fn symbol(self) -> char {
        match self {
            Player::X => 'X',
            Player::O => 'O',
        }
    }
}

impl fmt::Display for Player {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.symbol())
    }
}

/// How a finished game ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// This player completed a line.
    Win(Player),
    /// The board is full and nobody completed a line.
    Draw,
}

/// Why a move or a board was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum GameError {
    /// The cell index is not in `0..9`.
    #[error("cell {0} is outside the board (cells are 0..=8, row-major)")]
    OutOfRange(usize),
    /// The cell already holds a mark.
    #[error("cell {0} is already taken")]
    Occupied(usize),
    /// The game has already ended.
    #[error("the game is over")]
    GameOver,
    /// The position cannot arise in a game (wrong mark counts, play after a win, ...).
    #[error("unreachable position: {0}")]
    Unreachable(String),
    /// The text is not a board.
    #[error("cannot read a board: {0}")]
    Parse(String),
}

/// A set of cells, e.g. the legal moves or the optimal moves of a position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Moves(u16);

impl Moves {
    /// The set whose bit `i` says whether cell `i` is in it (bits above 8 are dropped).
    pub fn from_bits(bits: u16) -> Self {
        Moves(bits & ALL_CELLS)
    }

    /// The bits: bit `i` is set when cell `i` is in the set.
    #[inline]
    pub fn bits(self) -> u16 {
        self.0
    }

    /// Whether `cell` is in the set.
    #[inline]
    pub fn contains(self, cell: usize) -> bool {
        cell < CELLS && self.0 & (1 << cell) != 0
    }

    /// The number of cells in the set.
    #[inline]
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// Whether the set is empty.
    #[inline]
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The `k`-th cell of the set in increasing order.
    #[inline]
    pub fn nth(self, k: usize) -> Option<usize> {
        self.iter().nth(k)
    }

    /// The cells in increasing order.
    #[inline]
    pub fn iter(self) -> MovesIter {
        MovesIter(self.0)
    }

    /// A cell drawn uniformly from the set, or `None` if it is empty.
    #[inline]
    pub fn choose<R: Rng + ?Sized>(self, rng: &mut R) -> Option<usize> {
        if self.is_empty() {
            return None;
        }
        self.nth(rng.random_range(0..self.len()))
    }

    /// Write the set as a mask: `mask[i] = self.contains(i)` for every `i` in `mask`.
    #[inline]
    pub fn write_mask(self, mask: &mut [bool]) {
        for (i, m) in mask.iter_mut().enumerate() {
            *m = self.contains(i);
        }
    }
}

impl IntoIterator for Moves {
    type Item = usize;
    type IntoIter = MovesIter;
    fn into_iter(self) -> MovesIter {
        self.iter()
    }
}

/// The cells of a [`Moves`], in increasing order.
#[derive(Clone, Debug)]
pub struct MovesIter(u16);

impl Iterator for MovesIter {
    type Item = usize;
    #[inline]
    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let cell = self.0.trailing_zeros() as usize;
        self.0 &= self.0 - 1;
        Some(cell)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.0.count_ones() as usize;
        (n, Some(n))
    }
}

impl ExactSizeIterator for MovesIter {}

/// A tic-tac-toe position that can arise in a game (X moves first, nobody moves after a win).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Board {
    x: u16,
    o: u16,
}

impl Board {
    /// The empty board, X to move.
    pub const fn new() -> Self {
        Board { x: 0, o: 0 }
    }

    /// The mark in `cell` (`None` when empty or when `cell` is not in `0..9`).
    #[inline]
    pub fn get(&self, cell: usize) -> Option<Player> {
        if cell >= CELLS {
            None
        } else if self.x & (1 << cell) != 0 {
            Some(Player::X)
        } else if self.o & (1 << cell) != 0 {
            Some(Player::O)
        } else {
            None
        }
    }

    /// Every cell's mark, row-major.
    pub fn cells(&self) -> [Option<Player>; CELLS] {
        std::array::from_fn(|i| self.get(i))
    }

    /// The cells holding `player`'s marks.
    #[inline]
    pub fn marks(&self, player: Player) -> Moves {
        Moves(match player {
            Player::X => self.x,
            Player::O => self.o,
        })
    }

    /// The empty cells (whether or not the game is over).
    #[inline]
    pub fn empty_cells(&self) -> Moves {
        Moves(!(self.x | self.o) & ALL_CELLS)
    }

    /// How many marks are on the board.
    #[inline]
    pub fn moves_made(&self) -> usize {
        (self.x | self.o).count_ones() as usize
    }

    /// The player whose turn it is (X when both have the same number of marks).
    #[inline]
    pub fn to_move(&self) -> Player {
        if self.x.count_ones() == self.o.count_ones() {
            Player::X
        } else {
            Player::O
        }
    }

    /// The player who completed a line, if any.
    #[inline]
    pub fn winner(&self) -> Option<Player> {
        if has_line(self.x) {
            Some(Player::X)
        } else if has_line(self.o) {
            Some(Player::O)
        } else {
            None
        }
    }

    /// How the game ended, or `None` while it goes on.
    #[inline]
    pub fn outcome(&self) -> Option<Outcome> {
        match self.winner() {
            Some(p) => Some(Outcome::Win(p)),
            None if self.x | self.o == ALL_CELLS => Some(Outcome::Draw),
            None => None,
        }
    }

    /// Whether the game has ended.
    #[inline]
    pub fn is_over(&self) -> bool {
        self.outcome().is_some()
    }

    /// The cells the player to move may take (none once the game is over).
    #[inline]
    pub fn legal_moves(&self) -> Moves {
        if self.winner().is_some() {
            Moves(0)
        } else {
            self.empty_cells()
        }
    }

    /// Whether the player to move may take `cell`.
    #[inline]
    pub fn is_legal(&self, cell: usize) -> bool {
        self.legal_moves().contains(cell)
    }

    /// Why the player to move may not take `cell`, or `Ok` if they may.
    pub fn check_move(&self, cell: usize) -> Result<(), GameError> {
        if cell >= CELLS {
            Err(GameError::OutOfRange(cell))
        } else if self.is_over() {
            Err(GameError::GameOver)
        } else if (self.x | self.o) & (1 << cell) != 0 {
            Err(GameError::Occupied(cell))
        } else {
            Ok(())
        }
    }

    /// The player to move takes `cell`; returns that player. The board is unchanged on error.
    #[inline]
    pub fn play(&mut self, cell: usize) -> Result<Player, GameError> {
        self.check_move(cell)?;
        let player = self.to_move();
        match player {
            Player::X => self.x |= 1 << cell,
            Player::O => self.o |= 1 << cell,
        }
        Ok(player)
    }

    /// The board after the player to move takes `cell`.
    pub fn after(&self, cell: usize) -> Result<Board, GameError> {
        let mut next = *self;
        next.play(cell)?;
        Ok(next)
    }

    /// The board with these marks, if it can arise in a game.
    pub fn from_cells(cells: [Option<Player>; CELLS]) -> Result<Board, GameError> {
        let mut board = Board::new();
        for (i, c) in cells.iter().enumerate() {
            match c {
                Some(Player::X) => board.x |= 1 << i,
                Some(Player::O) => board.o |= 1 << i,
                None => {}
            }
        }
        if table()[board.index()].is_reachable() {
            Ok(board)
        } else {
            Err(GameError::Unreachable(board.to_string().replace('\n', "/")))
        }
    }

    /// The position's index in `0..3^9`: the sum over cells of `3^cell` times 0 (empty),
    /// 1 (X) or 2 (O).
    #[inline]
    pub fn index(&self) -> usize {
        let mut index = 0;
        for cell in (0..CELLS).rev() {
            let digit = ((self.x >> cell) & 1) + 2 * ((self.o >> cell) & 1);
            index = index * 3 + digit as usize;
        }
        index
    }

    /// The board with row and column labels, for people:
    ///
    /// ```text
    ///     0 1 2
    ///   0 X . O
    ///   1 . X .
    ///   2 . . O
    /// ```
    ///
    /// The cell in row `r` and column `c` is `3 * r + c`.
    pub fn render(&self) -> String {
        let mut s = String::from("    0 1 2\n");
        for row in 0..3 {
            s.push_str(&format!("  {row}"));
            for col in 0..3 {
                s.push(' ');
                s.push(self.get(3 * row + col).map_or('.', Player::symbol));
            }
            s.push('\n');
        }
        s
    }
}

/// Three lines of `X`, `O` and `.`, which [`Board::from_str`] reads back.
impl fmt::Display for Board {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for row in 0..3 {
            if row > 0 {
                f.write_str("\n")?;
            }
            for col in 0..3 {
                let c = self.get(3 * row + col).map_or('.', Player::symbol);
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// Reads nine cells row-major: `X`/`x`, `O`/`o`, and `.` or `_` for empty; whitespace,
/// `|`, `/` and `,` are ignored (`"X.O/.X./..O"`). The position must be reachable.
impl FromStr for Board {
    type Err = GameError;
    fn from_str(s: &str) -> Result<Board, GameError> {
        let mut cells = [None; CELLS];
        let mut n = 0;
        for ch in s.chars() {
            let cell = match ch {
                'X' | 'x' => Some(Player::X),
                'O' | 'o' => Some(Player::O),
                '.' | '_' => None,
                c if c.is_whitespace() || matches!(c, '|' | '/' | ',') => continue,
                c => {
                    return Err(GameError::Parse(format!(
                        "unexpected character `{c}` (use X, O and . for cells)"
                    )));
                }
            };
            if n == CELLS {
                return Err(GameError::Parse("more than 9 cells".into()));
            }
            cells[n] = cell;
            n += 1;
        }
        if n < CELLS {
            return Err(GameError::Parse(format!("{n} cells, expected 9")));
        }
        Board::from_cells(cells)
    }
}

#[inline]
fn has_line(marks: u16) -> bool {
    LINE_MASKS.iter().any(|&line| line & !marks == 0)
}

/// The optimal moves for the player to move: those with the best [`score`], so perfect
/// play that wins as fast as possible, and when losing loses as late as possible (moves
/// that merely hold a draw all score 0 and are all included). Empty once the game is over.
#[inline]
pub fn best_moves(board: &Board) -> Moves {
    Moves(table()[board.index()].best)
}

/// The game-theoretic value for the player to move under perfect play by both sides:
/// `1` win, `0` draw, `-1` loss. A finished game is valued for the player who would move
/// next (`-1` when the other player has just won).
#[inline]
pub fn value(board: &Board) -> i8 {
    score(board).signum()
}

/// The depth-aware minimax score for the player to move: `0` for a draw, and for a
/// decided game `±(1 + e)`, where `e` is the number of empty cells when it ends under
/// perfect play (positive: the player to move wins). A larger win is a quicker win; a
/// loss nearer `-1` is a slower one.
#[inline]
pub fn score(board: &Board) -> i8 {
    table()[board.index()].score
}

/// The number of positions reachable in a game, including finished ones (5478).
pub fn reachable_positions() -> usize {
    table().iter().filter(|e| e.is_reachable()).count()
}

/// One row of the solved table.
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// The optimal moves, as cell bits.
    best: u16,
    /// See [`score`]; [`UNREACHABLE`] for positions that cannot arise.
    score: i8,
}

const UNREACHABLE: i8 = i8::MIN;

impl Entry {
    fn is_reachable(&self) -> bool {
        self.score != UNREACHABLE
    }
}

/// The solved game: one entry per index in `0..3^9`, filled by negamax from the empty board.
fn table() -> &'static [Entry] {
    static TABLE: OnceLock<Box<[Entry]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = vec![
            Entry {
                best: 0,
                score: UNREACHABLE,
            };
            3usize.pow(CELLS as u32)
        ]
        .into_boxed_slice();
        solve(Board::new(), &mut table);
        table
    })
}

/// Fill `table` for `board` and every position reachable from it; returns `board`'s score.
fn solve(board: Board, table: &mut [Entry]) -> i8 {
    let index = board.index();
    if table[index].is_reachable() {
        return table[index].score;
    }
    let entry = if board.winner().is_some() {
        // The previous mover completed a line: the player to move has lost.
        Entry {
            best: 0,
            score: -(1 + board.empty_cells().len() as i8),
        }
    } else if board.empty_cells().is_empty() {
        Entry { best: 0, score: 0 }
    } else {
        let mut best_score = i8::MIN;
        let mut best = 0u16;
        for cell in board.legal_moves() {
            let mut next = board;
            let mark = 1 << cell;
            match board.to_move() {
                Player::X => next.x |= mark,
                Player::O => next.o |= mark,
            }
            let s = -solve(next, table);
            if s > best_score {
                best_score = s;
                best = mark;
            } else if s == best_score {
                best |= mark;
            }
        }
        Entry {
            best,
            score: best_score,
        }
    };
    table[index] = entry;
    entry.score
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::rng_from_seed;

    fn b(s: &str) -> Board {
        s.parse().unwrap()
    }

    /// Plain negamax with the same scoring, without the table.
    fn naive_score(board: Board) -> i8 {
        if board.winner().is_some() {
            return -(1 + board.empty_cells().len() as i8);
        }
        if board.empty_cells().is_empty() {
            return 0;
        }
        board
            .legal_moves()
            .iter()
            .map(|c| -naive_score(board.after(c).unwrap()))
            .max()
            .unwrap()
    }

    /// Every reachable board, by brute-force enumeration of games.
    fn all_boards() -> Vec<Board> {
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![Board::new()];
        while let Some(board) = stack.pop() {
            if seen.insert(board) {
                stack.extend(board.legal_moves().iter().map(|c| board.after(c).unwrap()));
            }
        }
        seen.into_iter().collect()
    }

    #[test]
    fn table_agrees_with_plain_negamax_on_every_reachable_position() {
        let boards = all_boards();
        assert_eq!(boards.len(), 5478);
        assert_eq!(reachable_positions(), 5478);
        for board in boards {
            let s = naive_score(board);
            assert_eq!(score(&board), s, "{board}");
            let best: Vec<usize> = board
                .legal_moves()
                .iter()
                .filter(|&c| -naive_score(board.after(c).unwrap()) == s)
                .collect();
            assert_eq!(
                best_moves(&board).iter().collect::<Vec<_>>(),
                best,
                "{board}"
            );
            assert_eq!(best_moves(&board).is_empty(), board.is_over());
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(value(&Board::new()), 0);
        // Every first move draws with perfect play.
        assert_eq!(best_moves(&Board::new()).len(), 9);
        // X to move completes the top row at once (a win with 4 empty cells left).
        let board = b("XX. OO. ...");
        assert_eq!(score(&board), 5);
        assert_eq!(best_moves(&board).iter().collect::<Vec<_>>(), vec![2]);
        // Opposite corners against the centre: O still draws.
        let board = b("X.. .O. ..X");
        assert_eq!(value(&board), 0);
        // O to move must block the diagonal; every other move loses at once.
        let board = b("X.. .X. O..");
        assert_eq!(board.to_move(), Player::O);
        assert_eq!(best_moves(&board).iter().collect::<Vec<_>>(), vec![8]);
        // A finished game is a loss for the player who would move next.
        assert_eq!(value(&b("XXX OO. ...")), -1);
        assert_eq!(value(&b("XOX XOO OXX")), 0);
    }

    #[test]
    fn rules_and_errors() {
        let mut board = Board::new();
        assert_eq!(board.play(4), Ok(Player::X));
        assert_eq!(board.play(4), Err(GameError::Occupied(4)));
        assert_eq!(board.play(9), Err(GameError::OutOfRange(9)));
        assert_eq!(board.to_move(), Player::O);
        assert_eq!(board.legal_moves().len(), 8);
        assert!(!board.is_legal(4) && board.is_legal(0));
        let mut won = b("XXX OO. ...");
        assert_eq!(won.winner(), Some(Player::X));
        assert_eq!(won.play(8), Err(GameError::GameOver));
        assert_eq!(won, b("XXX OO. ..."));
        let full = b("XOX XOO OXX");
        assert_eq!(full.outcome(), Some(Outcome::Draw));
        assert!(full.legal_moves().is_empty());
        // X wins on the ninth move with a full board: a win, not a draw.
        let last = b("XOX OXO XOX");
        assert_eq!(last.outcome(), Some(Outcome::Win(Player::X)));
    }

    #[test]
    fn unreachable_boards_and_bad_text_are_refused() {
        for s in ["OO. ... ...", "XXX ... ...", "XXX OOO ..."] {
            assert!(
                matches!(s.parse::<Board>(), Err(GameError::Unreachable(_))),
                "{s}"
            );
        }
        // O moved after X had already won.
        assert!(matches!(
            "XXX OO. .O.".parse::<Board>(),
            Err(GameError::Unreachable(_))
        ));
        assert!(matches!("XX".parse::<Board>(), Err(GameError::Parse(_))));
        assert!(matches!(
            "XO. ... ... .".parse::<Board>(),
            Err(GameError::Parse(_))
        ));
        assert!(matches!(
            "XQ. ... ...".parse::<Board>(),
            Err(GameError::Parse(_))
        ));
    }

    #[test]
    fn text_round_trip_and_render() {
        for board in all_boards() {
            assert_eq!(board.to_string().parse::<Board>(), Ok(board));
            assert_eq!(Board::from_cells(board.cells()), Ok(board));
        }
        let board = b("X.O|.X.|..O");
        assert_eq!(board.to_string(), "X.O\n.X.\n..O");
        assert_eq!(
            board.render(),
            "    0 1 2\n  0 X . O\n  1 . X .\n  2 . . O\n"
        );
    }

    #[test]
    fn moves_set() {
        let m = Moves::from_bits(0b1_0001_0110 | 0xF000);
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![1, 2, 4, 8]);
        assert_eq!(m.len(), 4);
        assert!(m.contains(8) && !m.contains(0) && !m.contains(12));
        assert_eq!(m.nth(2), Some(4));
        let mut mask = [true; 9];
        m.write_mask(&mut mask);
        assert_eq!(mask.iter().filter(|&&x| x).count(), 4);
        let mut rng = rng_from_seed(1);
        let mut counts = [0; 9];
        for _ in 0..4000 {
            counts[m.choose(&mut rng).unwrap()] += 1;
        }
        for c in [1, 2, 4, 8] {
            assert!((800..1200).contains(&counts[c]), "{counts:?}");
        }
        assert_eq!(Moves::default().choose(&mut rng), None);
    }

    /// Both sides branch over every optimal move: every game ends in a draw.
    #[test]
    fn perfect_play_against_itself_always_draws() {
        fn go(board: Board, leaves: &mut usize) {
            match board.outcome() {
                Some(o) => {
                    assert_eq!(o, Outcome::Draw, "{board}");
                    *leaves += 1;
                }
                None => {
                    for c in best_moves(&board) {
                        go(board.after(c).unwrap(), leaves);
                    }
                }
            }
        }
        let mut leaves = 0;
        go(Board::new(), &mut leaves);
        assert!(leaves > 100, "{leaves}");
    }

    /// The best-move player never loses, whichever side it takes, against every possible
    /// sequence of replies, and whichever of its optimal moves it picks.
    #[test]
    fn perfect_play_never_loses_to_anything() {
        fn go(board: Board, perfect: Player, games: &mut usize) {
            if let Some(o) = board.outcome() {
                assert_ne!(o, Outcome::Win(perfect.other()), "{board}");
                *games += 1;
                return;
            }
            let moves = if board.to_move() == perfect {
                best_moves(&board)
            } else {
                board.legal_moves()
            };
            for c in moves {
                go(board.after(c).unwrap(), perfect, games);
            }
        }
        for perfect in [Player::X, Player::O] {
            let mut games = 0;
            go(Board::new(), perfect, &mut games);
            assert!(games > 100, "{games}");
        }
    }
}
