"""Writes the YOLOv4-style test cfgs (Debian's darknet ships YOLOv2/v3 only).

Run from this folder: python3 gen_cfgs.py
"""


def conv(f, s=3, st=1, act='leaky', bn=1, groups=1):
    t = "[convolutional]\n"
    if bn:
        t += "batch_normalize=1\n"
    t += f"filters={f}\nsize={s}\nstride={st}\npad=1\nactivation={act}\n"
    if groups != 1:
        t += f"groups={groups}\n"
    return t + "\n"


def route(layers, groups=0, gid=0):
    t = f"[route]\nlayers={layers}\n"
    if groups:
        t += f"groups={groups}\ngroup_id={gid}\n"
    return t + "\n"


def yolo(mask):
    return ("[yolo]\nmask = %s\nanchors = 10,14,  23,27,  37,58,  81,82,  135,169,  344,319\n"
            "classes=1\nnum=6\njitter=.3\nignore_thresh = .7\ntruth_thresh = 1\nrandom=0\n\n" % mask)


NET = ("[net]\n# Testing\nbatch=1\nsubdivisions=1\nwidth=416\nheight=416\nchannels=3\nmomentum=0.9\n"
       "decay=0.0005\nlearning_rate=0.00261\nmax_batches = 2000200\npolicy=steps\nsteps=1600000,1800000\nscales=.1,.1\n\n")

# yolov4-tiny's layout (AlexeyAB darknet), classes reduced to 1.
s = "# The structure of AlexeyAB's yolov4-tiny.cfg (CSP blocks made of\n# grouped routes, two YOLO heads), with one class. Made by gen_cfgs.py.\n" + NET
s += conv(32, st=2) + conv(64, st=2)
for f in (64, 128, 256):
    s += conv(f) + route("-1", 2, 1) + conv(f // 2) + conv(f // 2) + route("-1,-2") + conv(f, 1) + route("-6,-1")
    s += "[maxpool]\nsize=2\nstride=2\n\n"
s += conv(512) + "##################################\n\n" + conv(256, 1) + conv(512)
s += conv(18, 1, act='linear', bn=0) + yolo("3,4,5")
s += route("-4") + conv(128, 1) + "[upsample]\nstride=2\n\n" + route("-1, 23") + conv(256)
s += conv(18, 1, act='linear', bn=0) + yolo("0,1,2")
open("yolov4-tiny-style.cfg", "w").write(s)

# A small network with YOLOv4's layer kinds.
s = ("# Small network with YOLOv4's layer kinds (mish, swish, relu, SPP with\n"
     "# stride-1 max pools, CSP routes, PAN neck, grouped conv, logistic head).\n"
     "# Made by gen_cfgs.py.\n") + NET.replace("channels=3\n", "channels=3\nletter_box=1\n")
s += conv(16, act='mish')                          # 0
s += conv(32, st=2, act='mish')                    # 1
s += conv(16, 1, act='mish')                       # 2
s += conv(32, act='swish')                         # 3
s += "[shortcut]\nfrom=-3\nactivation=linear\n\n"  # 4
s += conv(64, st=2, act='mish')                    # 5
s += conv(32, 1, act='mish')                       # 6
s += route("-2")                                   # 7
s += conv(32, 1, act='mish')                       # 8
s += conv(32, act='relu', groups=2)                # 9
s += "[shortcut]\nfrom=-2\nactivation=linear\n\n"  # 10
s += route("-1,-5")                                # 11
s += conv(64, 1, act='mish')                       # 12
s += conv(128, st=2, act='mish')                   # 13
s += conv(64, 1)                                   # 14
s += "[maxpool]\nstride=1\nsize=5\n\n"             # 15
s += route("-2")                                   # 16
s += "[maxpool]\nstride=1\nsize=9\n\n"             # 17
s += route("-4")                                   # 18
s += "[maxpool]\nstride=1\nsize=13\n\n"            # 19
s += route("-1,-3,-5,-6")                          # 20
s += conv(64, 1)                                   # 21
s += conv(32, 1)                                   # 22
s += "[upsample]\nstride=2\n\n"                    # 23
s += route("-1, 12")                               # 24
s += conv(64)                                      # 25
s += conv(18, 1, act='linear', bn=0)               # 26
s += yolo("0,1,2")                                 # 27
s += route("-3")                                   # 28
s += conv(64, st=2)                                # 29
s += route("-1, 21")                               # 30
s += conv(64)                                      # 31
s += conv(18, 1, act='logistic', bn=0)             # 32
s += yolo("3,4,5")                                 # 33
open("yolov4-style.cfg", "w").write(s)
