#!/usr/bin/env bash
# Is REPOSITORY:TAG free in ECR? Writes free=true|false to $GITHUB_OUTPUT (or stdout).
#   scripts/ecr_tag_free.sh <repository> <tag> [<inputs sha256>]
# A tag that exists is never pushed again: a released version, or a commit's runtime image,
# must not change under the functions and tasks that run it. With an inputs sha256
# (scripts/image_inputs.py), a released tag is compared with the `inputs-<sha256>` tag CD put
# on the same image: the same inputs are a no-op (free=false), other inputs fail the step, as
# scripts/upload_all.py refuses a venv tarball released with other bytes. Any other error (no
# such repository, access denied) fails the step instead of being read as "free".
set -euo pipefail
repository=$1
tag=$2
inputs=${3:-}
out=${GITHUB_OUTPUT:-/dev/stdout}

if ! tags=$(aws ecr describe-images --repository-name "$repository" \
  --image-ids imageTag="$tag" --query 'imageDetails[0].imageTags' --output text 2>&1); then
  if grep -q ImageNotFoundException <<<"$tags"; then
    echo "free=true" >>"$out"
    exit 0
  fi
  echo "::error::cannot tell whether $repository:$tag exists: $tags"
  exit 1
fi

if [ -n "$inputs" ]; then
  # The image's tags, tab-separated: the version and, when CD pushed it, inputs-<sha256>.
  recorded=$(tr '\t' '\n' <<<"$tags" | sed -n 's/^inputs-//p' | head -n 1)
  if [ -z "$recorded" ]; then
    echo "::notice::$repository:$tag exists, pushed before CD recorded image inputs: cannot compare; not pushed again. Bump the version to release a change."
  elif [ "$recorded" != "$inputs" ]; then
    echo "::error::$repository:$tag was released from other inputs (sha256 $recorded); this build's are sha256 $inputs. Nothing was pushed: bump the version to release a change."
    exit 1
  else
    echo "::notice::$repository:$tag is released from these same inputs (sha256 $inputs): nothing to do."
  fi
else
  echo "::notice::$repository:$tag exists; not pushed again. Bump the version to release a change."
fi
echo "free=false" >>"$out"
