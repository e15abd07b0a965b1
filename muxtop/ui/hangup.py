"""The dashboard ends when its terminal goes away (a closed window, `tmux kill-session`, a
dropped ssh), as it does on SIGTERM: floods stopped, a recording finished.

Three things stand in the way, each met here:
- SIGHUP reaches only a terminal's controlling process and its foreground group; a muxtop
  started any other way (setsid, a pty handed to it without becoming its controlling terminal)
  hears nothing, and Textual's input thread reads end-of-file forever. The hung-up terminal
  says so through poll()'s POLLHUP, which reads no byte: keys still go to Textual untouched.
- The kernel sends SIGCONT with SIGHUP, and Textual's Linux driver takes any SIGCONT for the
  end of a ctrl+z and starts its terminal mode again, with a second writer thread, on the dead
  terminal. A SIGCONT on a hung-up terminal resumes nothing here.
- A hung-up terminal fails every write (EIO): Textual's writer thread dies on the first, and
  the app's last writes then wait on its full queue forever. Once the terminal is gone, its
  fds point at /dev/null, so what Textual writes on its way out goes nowhere.
"""

from __future__ import annotations

import os
import select
import sys

from textual.driver import Driver

from muxtop.ui.textual_compat import sigcont_only_when

HANGUP_EVERY = 0.5  # seconds between looks: two syscalls a second, an exit within one
_GONE = select.POLLHUP | select.POLLERR | select.POLLNVAL


class TerminalWatch:
    """The terminal's fds (those Textual reads and writes), and whether it has hung up."""

    def __init__(self) -> None:
        self._poll = select.poll()
        self.fds: list[int] = []
        self.gone = False
        for stream in (sys.__stdin__, sys.__stdout__, sys.__stderr__):
            try:
                fd = stream.fileno() if stream is not None else -1
            except (OSError, ValueError):
                continue
            if fd >= 0 and stream.isatty() and fd not in self.fds:
                self.fds.append(fd)
                self._poll.register(fd, 0)  # no events asked: POLLHUP and POLLERR come anyway

    def hung_up(self) -> bool:
        if not self.gone and any(events & _GONE for _, events in self._poll.poll(0)):
            self.gone = True
        return self.gone

    def detach(self) -> None:
        """Point the terminal's fds at /dev/null (the terminal is gone)."""
        self.gone = True
        null = os.open(os.devnull, os.O_RDWR)
        try:
            for fd in self.fds:
                os.dup2(null, fd)
        finally:
            os.close(null)
        self.fds.clear()
        self._poll = select.poll()


def driver_for(driver: type[Driver], terminal: TerminalWatch) -> type[Driver]:
    """Textual's Linux driver, with a SIGCONT that comes with a hang-up left alone; any other
    driver (the headless one, textual-serve's) as it is."""
    from textual.drivers.linux_driver import LinuxDriver

    if not issubclass(driver, LinuxDriver):
        return driver
    return sigcont_only_when(driver, lambda: not terminal.hung_up())
