# Seed 000_b5150c003b7b0392.txt, example 1: "共享内存 使用 multiprocessing.Manager中的list,dict实现"
# (insert() adds 1..9 to a Manager dict and list, pop() removes them).
# Changed: the import line names shmq; `import time` added; pop()'s endless `while True`
# ends once it has removed the 9 dict items and the 9 list items (or after 10 s), so that
# p1.join() returns. Prints kept: the test checks every item is added and removed once.
# -*- coding: utf-8 -*-
"""
(C) rgc
All rights reserved
create time '2021/1/28 10:38'
Usage:
"""
import time  # added
from shmq import Process, Manager


def insert(d, l):
    """
    共享数据新增 进程
    :param d:
    :param l:
    :return:
    """
    for item in range(1, 10):
        print('新增 list,dict', item)
        d[item] = item
        l.append(item)


def pop(d: dict, l: list):
    """
    共享数据删除 进程
    :param d:
    :param l:
    :return:
    """
    n_d = n_l = 0                          # added: count what was removed
    deadline = time.monotonic() + 10       # added
    while n_d < 9 or n_l < 9:              # was: while True:
        if time.monotonic() > deadline:    # added
            break                          # added
        if len(d.keys()):
            for k in list(d.keys()):
                print('删除_dict的', k, d[k])
                del d[k]
                n_d += 1                   # added
        if len(l):
            rs = l.pop()
            print('删除list', rs)
            n_l += 1                       # added


if __name__ == '__main__':
    with Manager() as manager:
        d = manager.dict()
        l = manager.list()
        p = Process(target=insert, args=(d, l))
        p1 = Process(target=pop, args=(d, l))
        p.start()
        p1.start()
        p.join()
        p1.join()
        # p1.terminate()
