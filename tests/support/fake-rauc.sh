#!/bin/sh
# A stand-in for RAUC's command-line client, for the update tests on a host
# (the real one runs in the emulated board: make test-ota). It prints what
# RAUC 1.8's client prints for the calls vigil makes, and keeps its state in
# files beside itself, so each test copies it into a directory of its own:
#
#   booted            A or B: the slot running now
#   version.A|B       the bundle version installed in a slot (absent: none)
#   bad.A|B           present: the boot loader's verdict on the slot is bad
#   marks             every mark-good / mark-bad, one per line (appended)
#   mark-fails        present: marking fails
#   install-delay     seconds each install step takes (default 0)
#   installs          every bundle installed, one path per line (appended)
#
# A bundle is a text file: first line GOOD (installed; the second line is its
# version) or anything else (refused, with RAUC's error for that line:
# "signature", "compatible", "truncated", "corrupt" or "not a bundle").
D=$(cd "$(dirname "$0")" && pwd)
booted=$(cat "$D/booted" 2>/dev/null || echo A)
other() { if [ "$1" = A ]; then echo B; else echo A; fi; }

slot_json() { # NAME BOOTNAME
    state=inactive
    [ "$2" = "$booted" ] && state=booted
    good=good
    [ -e "$D/bad.$2" ] && good=bad
    if [ -e "$D/version.$2" ]; then
        bundle="{\"compatible\":\"vigil-test\",\"version\":\"$(cat "$D/version.$2")\"},\"installed\":{\"timestamp\":\"2026-12-07T21:00:00Z\",\"count\":1}"
    else
        bundle='{"compatible":null}'
    fi
    printf '{"%s":{"class":"rootfs","device":"/dev/null","type":"ext4","bootname":"%s","state":"%s","parent":null,"mountpoint":null,"boot_status":"%s","slot_status":{"bundle":%s}}}' \
        "$1" "$2" "$state" "$good" "$bundle"
}

case "$1" in
status)
    case "$2" in
    mark-good|mark-bad)
        echo "$2 $3" >> "$D/marks"
        if [ -e "$D/mark-fails" ]; then
            echo "rauc mark: failed to mark slot: backend failed" >&2
            exit 1
        fi
        [ "$2" = mark-bad ] && touch "$D/bad.$booted"
        [ "$2" = mark-good ] && rm -f "$D/bad.$booted"
        echo "rauc mark: marked slot rootfs as $2"
        exit 0
        ;;
    esac
    printf '{"compatible":"vigil-test","variant":null,"booted":"%s","boot_primary":"rootfs.0","slots":[%s,%s]}\n' \
        "$booted" "$(slot_json rootfs.0 A)" "$(slot_json rootfs.1 B)"
    ;;
install)
    bundle=$2
    delay=$(cat "$D/install-delay" 2>/dev/null || echo 0)
    echo "$bundle" >> "$D/installs"
    echo installing
    echo "  0% Installing"
    sleep "$delay"
    first=$(head -n 1 "$bundle" 2>/dev/null)
    if [ "$first" = GOOD ]; then
        echo " 20% Checking bundle done."
        sleep "$delay"
        echo " 80% Copying image to rootfs done."
        sleep "$delay"
        sed -n 2p "$bundle" > "$D/version.$(other "$booted")"
        rm -f "$D/bad.$(other "$booted")"
        echo "100% Installing done."
        echo idle
        echo "Installing \`$bundle\` succeeded"
        exit 0
    fi
    case "$first" in
    *signature*) why="Failed verifying signature: signer certificate not trusted" ;;
    *compatible*) why="Compatible mismatch: Expected 'vigil-test' but bundle manifest has 'other-board'" ;;
    *truncated*) why="Failed to check bundle identifier: Invalid identifier." ;;
    *corrupt*)
        # RAUC marks the target slot bad before it writes; a bundle found
        # corrupt while written leaves it so.
        touch "$D/bad.$(other "$booted")"
        why="Failed updating slot rootfs.1: Failed splicing data: Error reading from file: Input/output error" ;;
    *) why="Failed to check bundle identifier: Invalid identifier. Did you pass a valid RAUC bundle?" ;;
    esac
    echo "LastError: $why"
    echo "idle"
    echo "Installing \`$bundle\` failed" >&2
    exit 1
    ;;
*)
    echo "fake-rauc: unknown command $*" >&2
    exit 2
    ;;
esac
