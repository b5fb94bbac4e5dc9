"""/proc/PID of a process the bench scripts sample: one number of a file
(proc_value), and what is resident, by kind of mapping (smaps_groups)."""


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


def smaps_groups(pid):
    """Resident KiB of /proc/PID/smaps by kind of mapping: "[heap]",
    "[stack]", "libraries", "program", "anon N KiB" for anonymous mappings
    (by size, so that a grown heap of a thread stands out), or None."""
    groups, name = {}, None
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                head = line.split()
                if "-" in head[0] and not head[0].endswith(":"):
                    lo, hi = (int(x, 16) for x in head[0].split("-"))
                    size = (hi - lo) >> 10
                    path = head[5] if len(head) > 5 else ""
                    if not path:
                        name = "anon %d KiB" % size
                    elif path.startswith("["):
                        name = path
                    else:
                        name = "libraries" if ".so" in path else "program"
                elif head[0] == "Rss:":
                    groups[name] = groups.get(name, 0) + int(head[1])
    except OSError:
        return None
    return groups
