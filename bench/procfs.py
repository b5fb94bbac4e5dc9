"""One number of a /proc/PID file, for the bench scripts that sample a process."""


def proc_value(pid, name, key):
    """The first number after "KEY:" in /proc/PID/NAME (io, status), or None."""
    try:
        with open(f"/proc/{pid}/{name}") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None
