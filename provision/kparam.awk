# syncpi: set or remove one parameter on a kernel command line (cmdline.txt), touching nothing else.
#
#   awk -v mode=set|remove -v name=NAME [-v value=VALUE] -f kparam.awk FILE
#
# The first line is the command line; it is split the way the kernel's parser (next_arg in
# kernel/params.c) splits it: at white space outside double quotes. A parameter whose name equals
# NAME, "-" and "_" counting as the same character as they do for the kernel, is ours: "set"
# replaces the first such word in place with NAME=VALUE and drops any others; when there is none
# it is appended after the last word (before trailing white space, so "remove" restores the line
# byte for byte), or before "--", after which the words are init's, not the kernel's. Every
# other byte of the line, and any further lines, are printed unchanged.
# POSIX awk only (mawk, gawk, busybox).

function norm(s) { gsub(/-/, "_", s); return s }

function edit(line,    out, i, j, k, n, c, q, ws, tok, p, e, pname, done, emitted, eat, lead, init) {
  out = ""; i = 1; n = length(line); done = 0; emitted = 0; eat = 0; lead = ""; init = 0
  while (i <= n) {
    j = i
    while (j <= n && substr(line, j, 1) ~ /[ \t\r\v\f]/) j++
    ws = substr(line, i, j - i)
    # a removed first word takes the white space after it along, unless that ends the line
    if (eat) { ws = (j > n) ? lead ws : lead; eat = 0 }
    if (j > n) {
      # trailing white space: an appended parameter goes before it
      if (mode == "set" && !done) { out = out (emitted ? " " : "") name "=" value; done = 1 }
      out = out ws
      i = j
      break
    }
    k = j; q = 0
    while (k <= n) {
      c = substr(line, k, 1)
      if (c ~ /[ \t\r\v\f]/ && !q) break
      if (c == "\"") q = !q
      k++
    }
    tok = substr(line, j, k - j)
    p = tok; sub(/^"/, "", p)
    e = index(p, "=")
    pname = e ? substr(p, 1, e - 1) : p
    sub(/"$/, "", pname)
    if (tok == "--" && !init) {
      # what follows "--" is init's, not the kernel's: ours goes before it, and nothing after it is ours
      init = 1
      # (added as " NAME=VALUE" after the previous word, which is what "remove" takes away again)
      if (mode == "set" && !done) {
        if (emitted) out = out " " name "=" value
        else { out = out ws name "=" value; ws = " " }
        done = 1; emitted++
      }
    }
    if (!init && norm(pname) == target) {
      if (mode == "set" && !done) { out = out ws name "=" value; done = 1; emitted++ }
      else if (!emitted) { eat = 1; lead = ws }
      # else: the word and the white space before it go
    } else {
      out = out ws tok
      emitted++
    }
    i = k
  }
  if (eat) out = out lead
  if (mode == "set" && !done) out = out (emitted ? " " : "") name "=" value
  return out
}

BEGIN {
  if ((mode != "set" && mode != "remove") || name == "" || (mode == "set" && value == "")) {
    print "kparam.awk: usage: -v mode=set|remove -v name=NAME [-v value=VALUE]" > "/dev/stderr"
    bad = 1
    exit 2
  }
  target = norm(name)
}
NR == 1 { print edit($0); next }
{ print }
END { if (!bad && NR == 0 && mode == "set") print edit("") }
