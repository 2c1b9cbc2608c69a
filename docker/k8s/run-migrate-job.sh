#!/usr/bin/env bash
# Run one deploy phase's migrations as a Kubernetes Job and wait for its outcome.
#
#   docker/k8s/run-migrate-job.sh pre-deploy ghcr.io/acme/site:1f2e3d4 1f2e3d4
#   kubectl rollout ...
#   docker/k8s/run-migrate-job.sh post-deploy ghcr.io/acme/site:1f2e3d4 1f2e3d4
#
# Applies job-<phase>.yaml beside this script with the image and release label replaced, waits
# until the Job is Complete (exit 0) or Failed (exit 1, after printing the pod's last log lines),
# for at most JOB_TIMEOUT_SECONDS (default 1800, the Job's activeDeadlineSeconds). Uses the
# current kubectl context and namespace.
set -euo pipefail

usage="usage: $0 pre-deploy|post-deploy IMAGE RELEASE"
[ "$#" -eq 3 ] || { echo "$usage" >&2; exit 64; }
phase=$1 image=$2 release=$3
case $phase in
    pre-deploy | post-deploy) ;;
    *) echo "$usage" >&2; exit 64 ;;
esac
name="example-migrate-$phase"
manifest="$(dirname "$0")/job-$phase.yaml"

# A Job's pod template is immutable: the previous release's Job goes first.
kubectl delete job "$name" --ignore-not-found --wait=true
sed -e "s#image: ghcr.io/example/example:1.0.0#image: $image#" \
    -e "s#app.kubernetes.io/version: \"1.0.0\"#app.kubernetes.io/version: \"$release\"#" \
    "$manifest" | kubectl apply -f -

deadline=$((SECONDS + ${JOB_TIMEOUT_SECONDS:-1800}))
while [ "$SECONDS" -lt "$deadline" ]; do
    conditions=$(kubectl get job "$name" \
        -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type}{" "}{end}')
    case " $conditions " in
        *" Complete "*)
            kubectl logs "job/$name" --tail=20 || true
            echo "$name: complete"
            exit 0
            ;;
        *" Failed "*)
            kubectl logs "job/$name" --tail=50 || true
            echo "$name: failed" >&2
            exit 1
            ;;
    esac
    sleep 5
done
echo "$name: neither complete nor failed after ${JOB_TIMEOUT_SECONDS:-1800}s" >&2
exit 1
