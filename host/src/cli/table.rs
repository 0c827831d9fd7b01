//! The one look of every table the CLI prints (`stats`, the terminal
//! `dash`, and each `ls`), built with `comfy-table`: no borders, a header
//! row, two spaces between columns, numbers right-aligned, each row on one
//! line and no trailing spaces. The first column starts at the line's
//! start, so `awk '$1 == "images"'` finds a queue's row.

use std::fmt;

use comfy_table::{CellAlignment, TableStyle};

/// Spaces between two columns.
const GAP: u16 = 2;

/// A table in wasq's style; print it with `{}` (no newline at the end).
pub struct Table {
    inner: comfy_table::Table,
}

impl Table {
    /// A table with the columns of `spec` and no rows yet: the headers,
    /// separated by `|`, left-aligned text unless a header starts with `>`,
    /// which marks a column of numbers (counts, rates, durations),
    /// right-aligned: `"Queue|>pending|>active|paused"`.
    pub fn new(spec: &str) -> Self {
        let columns: Vec<(&str, CellAlignment)> = spec
            .split('|')
            .map(|header| match header.strip_prefix('>') {
                Some(number) => (number, CellAlignment::Right),
                None => (header, CellAlignment::Left),
            })
            .collect();
        let mut inner = comfy_table::Table::new();
        // Draws nothing but the cells: no borders, lines or separators.
        inner.load_style(TableStyle::new());
        inner.set_header(columns.iter().map(|(header, _)| *header));
        let last = columns.len().saturating_sub(1);
        for (i, (_, align)) in columns.iter().enumerate() {
            let column = inner.column_mut(i).expect("the header made the column");
            column.set_cell_alignment(*align);
            column.set_padding((0, if i == last { 0 } else { GAP }));
        }
        Table { inner }
    }

    /// Adds a row, one cell per column. Line breaks and tabs in a cell
    /// become spaces, so a row stays on one line.
    pub fn row<I>(&mut self, cells: I) -> &mut Self
    where
        I: IntoIterator,
        I::Item: fmt::Display,
    {
        let cells: Vec<String> = cells
            .into_iter()
            .map(|cell| cell.to_string().replace(['\n', '\r', '\t'], " "))
            .collect();
        self.inner.add_row(cells);
        self
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.trim_fmt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_borders_two_spaces_numbers_to_the_right() {
        let mut table = Table::new("Queue|>pending|State");
        table.row(["images", "7", "run"]);
        table.row(["notifications", "12345678", "paused\nfor now"]);
        assert_eq!(
            table.to_string(),
            "Queue           pending  State\n\
             images                7  run\n\
             notifications  12345678  paused for now"
        );
    }

    #[test]
    fn cells_may_be_anything_displayable() {
        let mut table = Table::new("Name|>Count");
        table.row([&"a" as &dyn fmt::Display, &3u64]);
        assert_eq!(table.to_string(), "Name  Count\na         3");
    }
}
