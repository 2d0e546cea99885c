#!/usr/bin/env bash
# Issue 16, choosing the delta format: what each candidate ships for one real update of an
# image root, and what it costs to make and apply, in one run.
#
#   bash scripts/bench-update-formats.sh OLD_ROOT NEW_ROOT [WORK_DIR]
#
# OLD_ROOT and NEW_ROOT are two versions of one image root (for example a Debian root
# before and after `apt-get upgrade` from bookworm-security). Candidates:
#   full       the new root as imageswarm packs it (GNU tar, zstd -3)
#   rsync      `rsync -aHAX --numeric-ids --delete --stats` (si_updateclient's method) into
#              a copy of the old root: bytes sent, without and with -z
#   members    the changed and new members as a tar (rsync's itemized list), zstd -19
#   patch-all  zstd -19 --long=27 --patch-from the old root's whole tar
#   patch-own  the changed members' tar, zstd -19 --patch-from a reference made of the old
#              contents of the same paths, which a node at the old version holds itself
#   casync     new chunks of the new root's catar against the old one's store
#   ostree     a static delta between two commits (ostree static-delta generate)
# Needs root, GNU tar, zstd, rsync, /usr/bin/time; casync and ostree are used if installed.
set -euo pipefail
old=$(realpath "$1")
new=$(realpath "$2")
work=${3:-$(mktemp -d /var/tmp/imageswarm-update-formats.XXXXXX)}
mkdir -p "$work"
cd "$work"

tar_args=(--create --format=posix --numeric-owner --sort=name --xattrs '--xattrs-include=*'
  --acls --selinux --pax-option=delete=atime,delete=ctime --one-file-system)
seconds() { awk -v s="$1" -v e="$2" 'BEGIN { printf "%.2f", e - s }'; }
now() { date +%s.%N; }
size() { stat -c %s "$1"; }
rss_mib() { awk '/Maximum resident/ { printf "%.0f", $6 / 1024 }' "$1"; }
row() { printf '| %s | %s | %s | %s |\n' "$1" "$2" "$3" "$4"; }

echo "| candidate | bytes to ship | time to make s | notes |"
echo "| --- | ---: | ---: | --- |"

t=$(now)
tar "${tar_args[@]}" --directory "$new" . | zstd -3 -q -T1 -o full.tar.zst -f
row full "$(size full.tar.zst)" "$(seconds "$t" "$(now)")" "new root, tar.zst -3"

rm -rf rsync-target && cp -a "$old" rsync-target
t=$(now)
rsync -aHAX --numeric-ids --delete --stats --dry-run --out-format='%i %n' "$new"/ rsync-target/ >rsync-list.txt
rsync -aHAX --numeric-ids --delete --stats "$new"/ rsync-target/ >rsync.txt
sent=$(awk -F': ' '/^Total bytes sent/ { gsub(/,/, "", $2); print $2 }' rsync.txt)
literal=$(awk -F': ' '/^Literal data/ { gsub(/[, a-z]/, "", $2); print $2 }' rsync.txt)
row rsync "$sent" "$(seconds "$t" "$(now)")" "literal data $literal B; itemized list and transfer"
rm -rf rsync-target && cp -a "$old" rsync-target
rsync -aHAXz --numeric-ids --delete --stats "$new"/ rsync-target/ >rsync-z.txt
sent_z=$(awk -F': ' '/^Total bytes sent/ { gsub(/,/, "", $2); print $2 }' rsync-z.txt)
row "rsync -z" "$sent_z" "" "compressed transfer"

# Changed or new regular files, symlinks and directories: rsync's itemized lines that
# transfer content (">f") or create something ("cd", "cL", …); deletions counted apart.
awk '$1 ~ /^(>f|cL|cd|cS|cD|hf|hL)/ { sub(/^[^ ]+ /, ""); print }' rsync-list.txt | sed 's|/$||' >changed.txt
awk '$1 == "*deleting" { sub(/^[^ ]+ /, ""); print }' rsync-list.txt >removed.txt
awk '$1 ~ /^>f/ { sub(/^[^ ]+ /, ""); print }' rsync-list.txt >changed-files.txt
t=$(now)
tar "${tar_args[@]}" --no-recursion --directory "$new" -T changed.txt | zstd -19 -q -T1 -o members.tar.zst -f
row members "$(size members.tar.zst)" "$(seconds "$t" "$(now)")" "$(wc -l <changed.txt) members, $(wc -l <removed.txt) removals; zstd -19"

tar "${tar_args[@]}" --directory "$old" . >old.tar
tar "${tar_args[@]}" --directory "$new" . >new.tar
t=$(now)
/usr/bin/time -v zstd -19 --long=27 -q -T1 --patch-from=old.tar new.tar -o patch-all.zst -f 2>patch-all.time
row patch-all "$(size patch-all.zst)" "$(seconds "$t" "$(now)")" "peak RSS $(rss_mib patch-all.time) MiB; the node needs the old whole tar"

# The reference: the old contents of the paths whose content changed, in list order.
: >reference.bin
while IFS= read -r path; do
  if [ -f "$old/$path" ] && [ ! -L "$old/$path" ]; then cat "$old/$path" >>reference.bin; fi
done <changed-files.txt
tar "${tar_args[@]}" --no-recursion --directory "$new" -T changed.txt >members.tar
t=$(now)
/usr/bin/time -v zstd -19 --long=27 -q -T1 --patch-from=reference.bin members.tar -o patch-own.zst -f 2>patch-own.time
made=$(seconds "$t" "$(now)")
t=$(now)
zstd -d -q --long=27 --patch-from=reference.bin patch-own.zst -o members.check -f
applied=$(seconds "$t" "$(now)")
cmp -s members.check members.tar
row patch-own "$(size patch-own.zst)" "$made" "reference $(size reference.bin) B (old contents of $(wc -l <changed-files.txt) changed files); peak RSS $(rss_mib patch-own.time) MiB; decompressed in $applied s"

if command -v casync >/dev/null; then
  rm -rf casync && mkdir casync
  casync make --store=casync/store casync/old.caidx "$old" >/dev/null 2>&1
  before=$(du -sb casync/store | cut -f1)
  t=$(now)
  casync make --store=casync/store casync/new.caidx "$new" >/dev/null 2>&1
  after=$(du -sb casync/store | cut -f1)
  row casync "$((after - before))" "$(seconds "$t" "$(now)")" "new chunks in the store (compressed), index $(size casync/new.caidx) B"
fi

if command -v ostree >/dev/null; then
  # OSTree commits no device nodes: both trees without /dev's contents.
  rm -rf ostree ostree-old ostree-new && ostree init --repo=ostree --mode=archive >/dev/null
  rsync -aHAX --numeric-ids --exclude='/dev/*' "$old"/ ostree-old/
  rsync -aHAX --numeric-ids --exclude='/dev/*' "$new"/ ostree-new/
  ostree commit --repo=ostree --branch=image --tree=dir=ostree-old --no-xattrs >/dev/null
  ostree commit --repo=ostree --branch=image --tree=dir=ostree-new --no-xattrs >/dev/null
  t=$(now)
  ostree static-delta generate --repo=ostree image >/dev/null
  made=$(seconds "$t" "$(now)")
  # What a client fetches: the delta's parts and superblock, and the objects it leaves out
  # as "fallback" (fetched whole, zlib-compressed, from the repo).
  show=$(ostree static-delta show --repo=ostree "$(ostree static-delta list --repo=ostree | head -1)")
  fallback=$(awk '/^Total Fallback Size:/ { print $4 }' <<<"$show")
  delta=$(du -sb ostree/deltas | cut -f1)
  row ostree "$((delta + fallback))" "$made" "static delta $delta B + fallback objects $fallback B (no xattrs, no /dev)"
fi

echo
echo "work dir: $work; old $(du -sb "$old" | cut -f1) B, new $(du -sb "$new" | cut -f1) B, $(find "$new" | wc -l) entries"
