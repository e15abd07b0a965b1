"""Where the dashboard's layout changes with the terminal's size (app.tcss acts on these)."""

NARROW, WIDE = 120, 180  # columns: below NARROW the trends give way; from WIDE the side widens
SHORT = 34  # lines: below it the lower half keeps fewer
MIN_SIZE = (60, 16)  # below this, a notice instead of the dashboard
CRAMPED = 20  # lines: below it the lower half gives the table room for its first rows
COMPACT_FOOTER = 100  # columns below which the footer packs its keys tighter

HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (NARROW, "-medium"), (WIDE, "-wide")]
VERTICAL_BREAKPOINTS = [(0, "-short"), (SHORT, "-tall")]
