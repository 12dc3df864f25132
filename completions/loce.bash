# bash completion for loce (generated from the loce Typer app by scripts/dev/gen_completions.py; do not edit)
_loce_complete() {
    local cur prev path i w words opts valued
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    path=""
    for ((i=1; i<COMP_CWORD; i++)); do
        w="${COMP_WORDS[i]}"
        case "${path:+$path }$w" in
            "analyze"|"configs"|"data"|"data import"|"data import coco"|"data prep"|"data stats"|"data synth"|"doctor"|"eval"|"finetune"|"inspect"|"inspect memory"|"inspect scores"|"predict"|"quickstart"|"report"|"train"|"train base") path="${path:+$path }$w" ;;
        esac
    done
    case "$path" in
        "") opts="analyze configs data doctor eval finetune inspect predict quickstart report train --debug --version --help -h"; valued="" ;;
        "analyze") opts="--ann --compare --metric --json --plot --help -h"; valued="--ann --compare --metric --plot" ;;
        "configs") opts="--json --help -h"; valued="" ;;
        "data") opts="import prep stats synth --help -h"; valued="" ;;
        "data import") opts="coco --help -h"; valued="" ;;
        "data import coco") opts="--train --train-images --val --val-images --copy --rare-max --common-max --force --json --help -h"; valued="--train --train-images --val --val-images --rare-max --common-max" ;;
        "data prep") opts="--root --version --check-images --subset --seed --out --force --json --help -h"; valued="--root --version --check-images --subset --seed --out" ;;
        "data stats") opts="--json --plot --help -h"; valued="--plot" ;;
        "data synth") opts="--out -o --like --num-classes --train-images --val-images --image-size --tail-exponent --max-objects --seed --force --no-masks --json --help -h"; valued="--out -o --like --num-classes --train-images --val-images --image-size --tail-exponent --max-objects --seed" ;;
        "doctor") opts="--json --help -h"; valued="" ;;
        "eval") opts="--results --ann --split --metric --evaluator --workers --max-dets --protocol --dets-per-class --out --cfg-options --gpus --nproc --nnodes --node-rank --master-addr --master-port --launcher --device --force --amp --data --json --verbose --help -h"; valued="--results --ann --split --metric --evaluator --workers --max-dets --protocol --dets-per-class --out --cfg-options --gpus --nproc --nnodes --node-rank --master-addr --master-port --launcher --device --amp --data" ;;
        "finetune") opts="--from --work-dir --resume --resume-from --seed --deterministic --cfg-options --force --gpus --nproc --nnodes --node-rank --master-addr --master-port --launcher --device --tensorboard --no-validate --checkpoint-every --requeue --amp --data --json --verbose --help -h"; valued="--from --work-dir --resume-from --seed --cfg-options --gpus --nproc --nnodes --node-rank --master-addr --master-port --launcher --device --checkpoint-every --amp --data" ;;
        "inspect") opts="memory scores --help -h"; valued="" ;;
        "inspect memory") opts="--plot --json --help -h"; valued="--plot" ;;
        "inspect scores") opts="--split --lowest --plot --json --measure --data --images-per-class --cfg-options --help -h"; valued="--split --lowest --plot --measure --data --images-per-class --cfg-options" ;;
        "predict") opts="--out --score-thr --max-dets --device --split --cfg-options --force --amp --data --json --help -h"; valued="--out --score-thr --max-dets --device --split --cfg-options --amp --data" ;;
        "quickstart") opts="--work-dir --json --verbose --help -h"; valued="--work-dir" ;;
        "report") opts="--split --metric --format --protocol --plot --allow-different-data --help -h"; valued="--split --metric --format --protocol --plot" ;;
        "train") opts="base --help -h"; valued="" ;;
        "train base") opts="--work-dir --resume --resume-from --seed --deterministic --cfg-options --force --gpus --nproc --nnodes --node-rank --master-addr --master-port --launcher --device --tensorboard --no-validate --checkpoint-every --requeue --amp --data --json --verbose --backbone-weights --help -h"; valued="--work-dir --resume-from --seed --cfg-options --gpus --nproc --nnodes --node-rank --master-addr --master-port --launcher --device --checkpoint-every --amp --data --backbone-weights" ;;
    esac
    # an option that takes a value: fall back to file-name completion
    if [[ -n "$prev" && " $valued " == *" $prev "* ]]; then
        COMPREPLY=()
        return 0
    fi
    COMPREPLY=( $(compgen -W "$opts" -- "$cur") )
}
complete -o default -F _loce_complete loce
